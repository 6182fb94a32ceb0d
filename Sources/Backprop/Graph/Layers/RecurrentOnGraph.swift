/// Recurrent layers (`RNN`, `LSTM`, `GRU`, any `RecurrentLayer`) and `SequenceClassifier` on the
/// graph. A call records one node for the whole recurrent layer (every stacked layer and step):
/// the forward and backward passes are the layer API's own (`RecurrentTape.forward` /
/// `RecurrentTape.backward`: the same products, gate kernels and batch slices), run on a tape of
/// the call's own that its node holds, not on the layer's. So one layer can be used at several
/// places of one graph (the same LSTM over two sequences): each call keeps its gate activations
/// and states, and the parameter gradients of the calls add up in `Parameter.grad`.
///
/// A call's tape is handed back to the layer when its node is gone and reused by a later call
/// (at most `RecurrentLayer.spareTapeLimit` are kept): once warm, a graph call allocates its
/// result and little else. The result is always a fresh tensor.
extension RecurrentLayer: GraphLayer {
    /// The layer on `x` `[N, T, F]`: `[N, T, H]`, or `[N, H]` (the last step) without
    /// `returnSequences`, from the layer's `initialHidden` / `initialCell` (nil: zeros) taken as
    /// constants.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        try callAsFunction(x, initialHidden: nil, initialCell: nil)
    }

    /// The layer on `x` `[N, T, F]` from the initial state h_0 = `initialHidden` and (LSTM)
    /// c_0 = `initialCell`, `[numLayers, N, H]`, which receive ∂L/∂h_0 and ∂L/∂c_0 when they
    /// require grad. A state not given is the layer's `initialHidden` / `initialCell` property
    /// taken as a constant (nil: zeros). `truncation` applies as in `backward`: gradients flow
    /// through the last `truncation` steps only, as if the state entering that window had been
    /// detached. Shape errors are `BackpropError.shapeMismatch` naming the layer.
    public func callAsFunction(_ x: Variable, initialHidden h0: Variable?, initialCell c0: Variable? = nil) throws -> Variable {
        let hiddenValue = h0?.value ?? initialHidden, cellValue = c0?.value ?? initialCell
        try checkInput(x.value, initialHidden: hiddenValue, initialCell: cellValue)
        let truncation = self.truncation
        if let k = truncation, k <= 0 {
            throw BackpropError.invalidArgument("\(summary): truncation must be positive (or nil), got \(k)")
        }
        let lease = RecurrentTapeLease(graphTape(), owner: self)
        let tape = lease.tape
        // The result is the call's own tensor, never one a later call of a reused tape overwrites.
        if returnSequences {
            tape.stages[numLayers - 1].output = Tensor(uncheckedShape: [0])
        } else {
            tape.lastOutput = Tensor(uncheckedShape: [0])
        }
        let xv = x.value, threads = self.threads, name = summary
        let y = try tape.forward(xv, initialHidden: hiddenValue, initialCell: cellValue, threads: threads, name: name)
        // A replay runs the tape's forward again: it writes into the same tensors (y among them).
        let forward = {
            let again = try lease.tape.forward(xv, initialHidden: hiddenValue, initialCell: cellValue, threads: threads, name: name)
            if again !== y { y.data.update(from: again.data, count: y.count) }
        }

        var inputs = [x]
        if let h0 { inputs.append(h0) }
        if let c0 { inputs.append(c0) }
        for w in weights { inputs += [w.weightIH.variable, w.weightHH.variable, w.biasIH.variable, w.biasHH.variable] }
        // Backward reads W_ih and W_hh (and, for an RNN, the top layer's outputs: act'(a) comes
        // from h_t); everything else it reads is the tape's own.
        var saving = weights.flatMap { [$0.weightIH.value, $0.weightHH.value] }
        if case .rnn = cell { saving.append(tape.stages[numLayers - 1].output) }
        let hasHidden = h0 != nil, hasCell = c0 != nil
        let list = GradientList()   // reused by every backward of this call (a replay allocates no array)
        return Variable.result(summary, inputs, y, saving: saving, forward: forward) { dy, needs in
            let tape = lease.tape
            let dx = try tape.backward(dy, truncation: truncation, inputGradient: needs[0])
            list.items.removeAll(keepingCapacity: true)
            list.items.append(needs[0] ? dx : nil)
            if hasHidden { list.items.append(tape.initialHiddenGradient) }
            if hasCell { list.items.append(tape.initialCellGradient) }
            for s in tape.stages { for g in s.ownGradients { list.items.append(g) } }
            return InputGradients(list.items)
        }
    }
}

/// The input gradients of a recurrent call's backward, in an array kept from one backward to the next.
final class GradientList {
    var items: [Tensor?] = []
}

/// A graph call's hold on its tape: the node's backward closure keeps it, and when the node goes
/// the tape returns to the layer for a later call.
final class RecurrentTapeLease {
    let tape: RecurrentTape
    private weak var owner: RecurrentLayer?

    init(_ tape: RecurrentTape, owner: RecurrentLayer) {
        self.tape = tape
        self.owner = owner
    }

    deinit {
        tape.stages.first?.input = nil   // the caller's input is not kept alive by a spare tape
        owner?.returnTape(tape)
    }
}

extension SequenceClassifier: GraphLayer {
    /// The recurrent layers' last step, then `fc`, on the graph: logits `[N, C]` for `x` `[N, T, F]`.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        try fc(try rnn(x))
    }
}
