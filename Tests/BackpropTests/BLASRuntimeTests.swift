import XCTest
@testable import Backprop

final class BLASRuntimeTests: XCTestCase {
    let avx512: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]

    func testDecisionUpgradesAWeakCore() {
        XCTAssertEqual(BLAS.decide(detected: "Prescott", flags: avx512, override: nil).switchTo, "SkylakeX")
        XCTAssertEqual(BLAS.decide(detected: "Sandybridge", flags: ["avx", "avx2", "fma"], override: nil).switchTo, "Haswell")
        XCTAssertEqual(BLAS.decide(detected: "Nehalem", flags: ["sse4_2"], override: nil).switchTo, nil)
    }

    func testDecisionKeepsARightOrUnknownCore() {
        XCTAssertNil(BLAS.decide(detected: "Cooperlake", flags: avx512, override: nil).switchTo)
        XCTAssertNil(BLAS.decide(detected: "SkylakeX", flags: avx512, override: nil).switchTo)
        XCTAssertNil(BLAS.decide(detected: "Haswell", flags: ["avx", "avx2", "fma"], override: nil).switchTo)
        XCTAssertNil(BLAS.decide(detected: "NewCoreFrom2030", flags: avx512, override: nil).switchTo)
    }

    func testDecisionObeysOverride() {
        XCTAssertEqual(BLAS.decide(detected: "SkylakeX", flags: avx512, override: "Prescott").switchTo, "Prescott")
        XCTAssertEqual(BLAS.decide(detected: "Prescott", flags: avx512, override: "auto").switchTo, "SkylakeX")
    }

    /// Forces the slow kernels at run time, as a misdetecting OpenBLAS would load them, then runs
    /// the selection and checks that the CPU's best family is active and products stay right.
    func testSwitchingCoresAtRunTime() throws {
        let initial = BLAS.coreName
        let best = BLAS.bestCore(forFlags: BLAS.cpuFlags())
        defer { try? BLAS.useCore(initial) }
        try BLAS.useCore("Prescott")
        XCTAssertEqual(BLAS.coreName, "Prescott")
        let decision = BLAS.decide(detected: BLAS.coreName, flags: BLAS.cpuFlags(), override: nil)
        if best.rank > 1 {
            XCTAssertEqual(decision.switchTo, best.name)
            try BLAS.useCore(best.name)
            XCTAssertEqual(BLAS.coreName.lowercased(), best.name.lowercased())
        }
        // A product under the active kernels still agrees with a plain loop.
        let a = try Tensor((0..<12).map(Float.init), shape: [3, 4])
        let b = try Tensor((0..<8).map(Float.init), shape: [4, 2])
        let c = try Tensor(zeros: [3, 2])
        try gemm(a, b, into: c)
        XCTAssertEqual(c.scalars, [28, 34, 76, 98, 124, 162])
    }

    func testUnknownCoreIsRefused() {
        XCTAssertThrowsError(try BLAS.useCore("NoSuchCore"))
    }

    func testThreadCountCanBeSet() {
        let before = BLAS.threadCount
        BLAS.threadCount = 1
        XCTAssertEqual(BLAS.threadCount, 1)
        BLAS.threadCount = before
    }

    func testGemmShapeErrorNamesShapes() {
        let a = try! Tensor(zeros: [3, 4]), b = try! Tensor(zeros: [5, 2]), c = try! Tensor(zeros: [3, 2])
        XCTAssertThrowsError(try gemm(a, b, into: c, caller: "Test")) { error in
            XCTAssertTrue("\(error)".contains("Test"), "\(error)")
            XCTAssertTrue("\(error)".contains("3×4"), "\(error)")
        }
    }

    func testTransposeCopiesAndChecksShapes() throws {
        let a = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = try Tensor(zeros: [3, 2])
        try transpose(Matrix(a), into: Matrix(b))
        XCTAssertEqual(b.scalars, [1, 4, 2, 5, 3, 6])
        // A block with a row stride: the 2×2 top-left of a, into the first 2 columns of a 2×3 target.
        let c = try Tensor(zeros: [2, 3])
        try transpose(Matrix(a, rows: 2, columns: 2, stride: 3), into: Matrix(c, rows: 2, columns: 2, stride: 3))
        XCTAssertEqual(c.scalars, [1, 4, 0, 2, 5, 0])
        XCTAssertThrowsError(try transpose(Matrix(a), into: Matrix(a), caller: "Test")) { error in
            XCTAssertTrue("\(error)".contains("Test") && "\(error)".contains("2×3"), "\(error)")
        }
    }

    /// After a two-thread sgemm, OpenBLAS's worker spins before it sleeps. The engine shortens
    /// that spin to 2^20 cycles (≈ 0.3 ms) unless the user set OPENBLAS_THREAD_TIMEOUT; with
    /// OpenBLAS's own 2^28 the worker burns ≈ 0.1 s of CPU after every call. Measured as the
    /// process's CPU time while the caller sleeps 300 ms after a product.
    func testIdleWorkerSleepsSoon() throws {
        let env = ProcessInfo.processInfo.environment
        try XCTSkipIf(env["OPENBLAS_THREAD_TIMEOUT"] != nil || env["GOTO_THREAD_TIMEOUT"] != nil,
                      "the user's OPENBLAS_THREAD_TIMEOUT is in effect")
        try XCTSkipIf(BLAS.processorCount < 2, "one processor: no OpenBLAS worker")
        XCTAssertEqual(BLAS.workerSpin, "2^20 cycles")
        let saved = BLAS.threadCount
        BLAS.threadCount = 2
        defer { BLAS.threadCount = saved }
        let n = 512
        let a = try Tensor(zeros: [n, n]), b = try Tensor(zeros: [n, n]), c = try Tensor(zeros: [n, n])
        func cpuSeconds() -> Double {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        var idleCPU: [Double] = []
        for _ in 0..<3 {
            try gemm(Matrix(a), transposeA: false, Matrix(b), transposeB: false, into: Matrix(c), caller: "test")
            let before = cpuSeconds()
            usleep(300_000)
            idleCPU.append(cpuSeconds() - before)
        }
        // 2^28 cycles of spinning is ≥ 50 ms at any clock below 5 GHz; 2^20 is well under 5 ms.
        XCTAssertLessThan(idleCPU.min() ?? 1, 0.03, "CPU time while idle after a product: \(idleCPU) s")
    }
}
