import BackpropMPI
import Foundation

// `mpirun -np N mpi-bench [repeats]`: MPI_Allreduce (sum of floats, in place) time for message
// sizes from 4 B to 64 MB, the median of `repeats` calls (default 30) after 3 warm-up calls,
// each timed between barriers. Rank 0 prints one line per size: bytes, median µs, and the
// algorithm bandwidth bytes / time and the ring's bus bandwidth 2(N−1)/N · bytes / time, then
// the median µs of the same reduction as MPI_Iallreduce tested until done (as `DataParallel`
// waits for a bucket reduced during backward).
do {
    let world = try Communicator.initializeWorld()
    let repeats = max(3, CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 30)
    var sizes: [Int] = [1]
    while sizes.last! < 16 << 20 { sizes.append(sizes.last! * 4) }
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: sizes.last!)
    buffer.initialize(repeating: 1, count: sizes.last!)
    if world.rank == 0 { print("ranks \(world.size)\n     bytes   median µs   algbw GB/s   busbw GB/s   Iallreduce µs") }
    for count in sizes {
        var times: [Double] = []
        for i in 0..<(repeats + 3) {
            try world.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try world.allreduce(buffer, count: count, .sum)
            let t = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3
            if i >= 3 { times.append(t) }
            buffer.update(repeating: 1, count: count)
        }
        var nonblocking: [Double] = []
        for i in 0..<(repeats + 3) {
            try world.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            let request = try world.startAllreduce(buffer, count: count)
            while try !request.test() {}
            let t = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3
            if i >= 3 { nonblocking.append(t) }
            buffer.update(repeating: 1, count: count)
        }
        // Every rank's median, the slowest of them (a collective ends when its last rank does).
        times.sort()
        nonblocking.sort()
        let medians = try world.allreduce([times[times.count / 2], nonblocking[nonblocking.count / 2]], .max)
        let median = medians[0]
        if world.rank == 0 {
            let bytes = Double(count * 4), n = Double(world.size)
            print(String(format: "%10d  %10.1f  %11.3f  %11.3f  %14.1f", count * 4, median, bytes / median / 1e3,
                         2 * (n - 1) / n * bytes / median / 1e3, medians[1]))
        }
    }
    world.finalize()
} catch {
    FileHandle.standardError.write(Data("mpi-bench: \(error)\n".utf8))
    exit(1)
}
