/// Window geometry shared by the 2-d pooling layers (PyTorch's floor mode, `ceil_mode=False`):
/// input `[N, C, H, W]`, output `[N, C, Ho, Wo]`, `Ho = (H + 2·ph − kh) / sh + 1`.
struct PoolGeometry {
    let kernel: (height: Int, width: Int)
    let stride: (height: Int, width: Int)
    let padding: (height: Int, width: Int)

    init(name: String, kernel: (Int, Int), stride: (Int, Int)?, padding: (Int, Int)) throws {
        guard kernel.0 > 0, kernel.1 > 0 else {
            throw BackpropError.invalidArgument("\(name): kernel size \(kernel) must be positive")
        }
        let s = stride ?? kernel
        guard s.0 > 0, s.1 > 0 else {
            throw BackpropError.invalidArgument("\(name): stride \(s) must be positive")
        }
        // PyTorch: "pad should be at most half of effective kernel size".
        guard padding.0 >= 0, padding.1 >= 0, padding.0 <= kernel.0 / 2, padding.1 <= kernel.1 / 2 else {
            throw BackpropError.invalidArgument("\(name): padding \(padding) must be between 0 and half the kernel \(kernel)")
        }
        self.kernel = (kernel.0, kernel.1)
        self.stride = (s.0, s.1)
        self.padding = (padding.0, padding.1)
    }

    func describe(_ name: String) -> String {
        var s = "\(name)(\(kernel.height)×\(kernel.width)"
        if stride != kernel { s += stride.height == stride.width ? ", stride \(stride.height)" : ", stride \(stride.height)×\(stride.width)" }
        if padding != (0, 0) { s += padding.height == padding.width ? ", padding \(padding.height)" : ", padding \(padding.height)×\(padding.width)" }
        return s + ")"
    }

    func outputShape(for shape: [Int], layer: String) throws -> [Int] {
        guard shape.count == 4 else {
            throw BackpropError.shapeMismatch(where: layer, detail: "expected input [N, C, H, W], got \(shape)")
        }
        let h = shape[2] + 2 * padding.height, w = shape[3] + 2 * padding.width
        guard shape[2] > 0, shape[3] > 0, h >= kernel.height, w >= kernel.width else {
            throw BackpropError.shapeMismatch(
                where: layer,
                detail: "input \(shape) padded to \(h)×\(w) is smaller than the \(kernel.height)×\(kernel.width) window")
        }
        return [shape[0], shape[1], (h - kernel.height) / stride.height + 1, (w - kernel.width) / stride.width + 1]
    }
}
