/// The parameter gradients of a layer whose backward runs in batch slices (`BatchSliceable`,
/// `BatchSlices`): each slice sums its images' contributions into a buffer of its own, and
/// `finish` adds the slices' buffers in slice order, so results repeat exactly for a slice count.
///
/// Slice 0 writes straight into the parameters' `grad`. Its first product uses β = 0 after a lazy
/// `zeroGrad` (it overwrites, no memset), later ones β = 1; the gradient counts as written only
/// when `finish` has run, so a pass refused half-way leaves a zeroed gradient zero. Slices 1, 2, … write into their own buffers, first with β = 0. Loops that add
/// into a gradient (a bias: `db += Σ dY`) ask for `zeroedTarget`, which clears the buffer first when
/// nothing has been written to it yet.
///
/// `begin(slices:into:)` with tensors of its own replaces the parameters' `grad` as slice 0's
/// buffers (first product β = 0): a graph call's backward writes the gradients it returns there.
///
/// Nothing is allocated once the buffers have been sized for a slice count.
final class SliceGradients {
    private let parameters: [Parameter]
    /// [slice][parameter]: slice 0's entries are the parameters' gradient tensors.
    private var buffers: [[Tensor]] = []
    /// β of the next product into buffer [slice][parameter], at slice · parameters.count + parameter.
    /// Raw storage: slices write their own entries concurrently, which an array's mutation (a
    /// uniqueness check on the whole buffer) must not see.
    private var betas = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    private var betaCapacity = 0
    private var slices = 0
    /// Whether slice 0 writes the parameters' `grad` (else tensors given to `begin`).
    private var writesParameters = true

    init(_ parameters: [Parameter]) { self.parameters = parameters }
    deinit { betas.deallocate() }

    /// Starts a backward pass over `count` slices, its gradients in the parameters' `grad`, or in
    /// `targets` (one tensor per parameter, of its shape) when given.
    func begin(slices count: Int, into targets: [Tensor]? = nil) {
        slices = count
        while buffers.count < count { buffers.append(parameters.map { Tensor(uncheckedShape: $0.shape) }) }
        let needed = Swift.max(1, count) * parameters.count
        if betaCapacity < needed {
            betas.deallocate()
            betas = .allocate(capacity: needed)
            betaCapacity = needed
        }
        betas.update(repeating: 0, count: needed)
        writesParameters = targets == nil
        for (i, p) in parameters.enumerated() {
            if let targets {
                buffers[0][i] = targets[i]
                betas[i] = 0
            } else {
                let (gradient, beta) = p.gradientForSlicedAccumulation()
                buffers[0][i] = gradient
                betas[i] = beta
            }
        }
    }

    /// Parameter `index`'s buffer for `slice` and the β its next product must use; the β after
    /// it is 1 (call this once per product).
    func target(_ index: Int, slice: Int) -> (buffer: Tensor, beta: Float) {
        let at = slice * parameters.count + index
        let beta = betas[at]
        betas[at] = 1
        return (buffers[slice][index], beta)
    }

    /// Parameter `index`'s buffer for `slice`, zeroed if nothing was written to it yet, for a
    /// loop that adds into it.
    func zeroedTarget(_ index: Int, slice: Int) -> Tensor {
        let (buffer, beta) = target(index, slice: slice)
        if beta == 0 { buffer.data.update(repeating: 0, count: buffer.count) }
        return buffer
    }

    /// Adds slices 1, 2, … into the parameters' gradients, in order. A parameter no slice wrote
    /// (an empty batch) is set to zero, as an empty sum.
    func finish() {
        for i in parameters.indices {
            let total = buffers[0][i]
            if betas[i] == 0 { total.data.update(repeating: 0, count: total.count) }
            for s in 1..<Swift.max(1, slices) where betas[s * parameters.count + i] != 0 {
                VectorLoops.add(buffers[s][i].data, into: total.data, count: total.count)
            }
            if writesParameters { parameters[i].gradientWritten() }
        }
        slices = 0
    }
}
