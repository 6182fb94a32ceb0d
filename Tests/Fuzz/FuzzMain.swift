// libFuzzer entry point for every parser a user can reach, and for sequences of API calls. Not
// part of the SwiftPM package: scripts/fuzz compiles this file together with the sources of
// Backprop, BackpropData and BackpropOptim and Tests/BackpropTests/APISequenceFuzzer.swift (their
// `import Backprop…` lines stripped) into ONE module, instrumented with `-sanitize=fuzzer,address`,
// so internal functions are reachable and coverage covers them all.
//
// The target is chosen by the environment variable BACKPROP_FUZZ_TARGET:
//   idx           the input is an IDX file (raw, or gzip when it starts with 1f 8b)
//   idx-gz        the input, gzip-compressed, is an IDX file (fuzzes the decompressed path)
//   csv           the input is a CSV data set file (raw or gzip)
//   safetensors   SafetensorsFile.read(data:) plus int64Values of every tensor
//   model         the input is a model file: ModelFile.load (safetensors + architecture JSON)
//   arch          Architecture(json:source:) on the input as UTF-8 text
//   pgm           PGM.decode
//   api           APISequenceFuzzer: the input chooses a small model and a sequence of public calls
//                 (forward, backward, changes of saved tensors, shared instances, optimizer steps, …),
//                 every outcome checked against a reference model; a finding is a fatal error. The
//                 counts (calls, distinct sequences, errors by kind) are printed at exit.
// Invariant checked for every input: the parser returns or throws BackpropError. Any other
// error, a trap (overflow, index out of range, force unwrap) or an ASan report is a finding.
// Oracles on success: IDX raw inputs re-encode to the same bytes; safetensors files re-read
// after serialization give the same Float32 tensors.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

private let target: String = ProcessInfo.processInfo.environment["BACKPROP_FUZZ_TARGET"] ?? ""
private let scratchPath: String = {
    let dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    return "\(dir)/backprop-fuzz-\(getpid())"
}()

private func writeScratch(_ bytes: [UInt8]) -> String {
    guard let f = fopen(scratchPath, "wb") else { fatalError("fuzz harness: cannot write \(scratchPath)") }
    _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
    return scratchPath
}

private func expectBackpropError(_ body: () throws -> Void) {
    do { try body() } catch is BackpropError {
        // the documented failure mode
    } catch {
        fatalError("fuzz target \(target): non-BackpropError thrown: \(type(of: error)) \(error)")
    }
}

private let limit = 1 << 20   // byte limits passed to the readers: keeps every run small

private let apiFuzzer = APISequenceFuzzer()
private var apiReported = false

private func reportAPIFuzzer() {
    guard target == "api", !apiReported else { return }
    apiReported = true
    fputs(apiFuzzer.stats.report + "\n", stderr)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    switch target {
    case "idx":
        expectBackpropError {
            let c = try IDX.read(path: writeScratch(bytes), maxBytes: limit)
            if !Gzip.isGzip(bytes) {
                let again = try IDX.encode(c)
                if again != bytes { fatalError("IDX: parsed file does not re-encode to its own bytes") }
            }
        }
    case "idx-gz":
        expectBackpropError {
            let packed = try Gzip.compress(bytes, level: 1)
            let c = try IDX.read(path: writeScratch(packed), maxBytes: limit)
            if try IDX.encode(c) != bytes { fatalError("IDX (gzip): parsed file does not re-encode to its own bytes") }
        }
    case "csv":
        expectBackpropError {
            let d = try CSV.read(path: writeScratch(bytes), maxBytes: limit)
            if d.images.count != d.count * d.featureCount { fatalError("CSV: dataset size mismatch") }
        }
        expectBackpropError {
            let t = try CSV.readTable(path: writeScratch(bytes), maxBytes: limit)
            if t.features.count != t.count * t.featureCount || (t.labels?.count ?? -1) != t.count {
                fatalError("CSV.readTable: dataset size mismatch")
            }
        }
    case "safetensors":
        expectBackpropError {
            let f = try SafetensorsFile.read(data: bytes, path: "<fuzz>")
            for name in f.order { _ = try? f.int64Values(name) }
            let again = try SafetensorsFile.read(data: try f.serialized(), path: "<fuzz-again>")
            for (name, t) in f.tensors {
                guard let u = again.tensors[name], u.shape == t.shape,
                      memcmp(u.data, t.data, t.count * 4) == 0 else {
                    fatalError("safetensors: tensor \(name) changed in a write/read round trip")
                }
            }
        }
    case "model":
        expectBackpropError { _ = try ModelFile.load(writeScratch(bytes)) }
    case "arch":
        expectBackpropError {
            let a = try Architecture(json: String(decoding: bytes, as: UTF8.self), source: "<fuzz>")
            let b = try Architecture(json: a.json, source: "<fuzz-again>")
            if a != b { fatalError("architecture: json round trip changed \(a) into \(b)") }
        }
    case "pgm":
        expectBackpropError {
            let p = try PGM.decode(bytes, path: "<fuzz>")
            if p.pixels.count != p.width * p.height { fatalError("PGM: pixel count mismatch") }
        }
    case "api":
        if apiFuzzer.stats.sequences == 0 { atexit { reportAPIFuzzer() } }
        let findings = apiFuzzer.run(bytes)
        if !findings.isEmpty {
            reportAPIFuzzer()
            fatalError("api: " + findings.joined(separator: "\n\n"))
        }
        let n = apiFuzzer.stats.sequences
        if n & (n - 1) == 0 && n >= 4096 { fputs(apiFuzzer.stats.report + "\n", stderr) }
    default:
        fatalError("set BACKPROP_FUZZ_TARGET to one of: idx idx-gz csv safetensors model arch pgm api")
    }
    return 0
}
