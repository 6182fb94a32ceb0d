/// Whether ops record nodes for backward (PyTorch's grad mode).
///
/// A task-local value: `noGrad` turns recording off for the code it runs, on the calling thread
/// (or task) only, so two threads evaluating and training at once do not see each other's mode.
public enum GradMode {
    @TaskLocal static var disabled = false

    /// True unless inside `noGrad` (PyTorch's `torch.is_grad_enabled()`).
    public static var isEnabled: Bool { !disabled }
}

/// Runs `body` without recording (PyTorch's `with torch.no_grad():`): every op inside returns a
/// leaf that requires no grad and keeps nothing for backward, so evaluation costs no graph.
///
///     let logits = try noGrad { try matmul(x, w) + b }
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$disabled.withValue(true, operation: body)
}
