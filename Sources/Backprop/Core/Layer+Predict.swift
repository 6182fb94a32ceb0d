extension Layer {
    /// The model's output for `input` in evaluation mode (dropout off, batch norm on its running
    /// statistics), the mode the layer was in restored afterwards. The result is the last layer's
    /// own output buffer, overwritten by the next call: copy it to keep it (`inferenceOutput`
    /// does). Once a shape has been seen, a call allocates nothing (every layer reuses its
    /// buffers); `predict`, `predictProbabilities` and `inferenceOutput` are built on it.
    public func evaluationForward(_ input: Tensor) throws -> Tensor {
        let training = isTraining
        if training { isTraining = false }
        defer { if training { isTraining = true } }
        return try forward(input)
    }
}
