import Foundation

/// The in-place progress line (epoch, batch, loss, images/s, ETA) on a terminal; silent when
/// standard error is not a terminal, so logs and pipes stay clean.
struct ProgressLine {
    let enabled: Bool
    private var lastDraw = 0.0

    init(enabled: Bool = isatty(STDERR_FILENO) == 1) { self.enabled = enabled }

    mutating func update(epoch: Int, epochs: Int, batch: Int, batches: Int, loss: Double,
                         imagesPerSecond: Double, elapsed: Double) {
        guard enabled else { return }
        let now = Date().timeIntervalSince1970
        if now - lastDraw < 0.1 && batch < batches { return }
        lastDraw = now
        let eta = batch > 0 ? elapsed / Double(batch) * Double(batches - batch) : 0
        let line = String(format: "epoch %d/%d  batch %d/%d  loss %.4f  %.0f img/s  ETA %.1fs",
                          epoch, epochs, batch, batches, loss, imagesPerSecond, eta)
        FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
    }

    func clear() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
