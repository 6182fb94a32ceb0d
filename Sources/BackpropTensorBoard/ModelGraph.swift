import Backprop

/// The nodes TensorBoard's Graphs tab draws for a model or a recorded computation.
public enum ModelGraph {
    /// A layer model as a graph, in PyTorch's style: name scopes `Type[child]` per container
    /// (`Sequential/Dense[0]`), in each leaf layer one op node (op = the layer's type, `attr` =
    /// its summary) fed by the previous layer and by one `Parameter` node per parameter (`attr` =
    /// the parameter's `state_dict` name, output shape = its shape); `input` and `output` IO nodes.
    ///
    /// With `input`, the model runs once on it in evaluation mode (no statistics change; the
    /// training mode is restored) to give every top-level layer's output shape.
    public static func nodes(of model: Layer, input: Tensor? = nil) throws -> [GraphNode] {
        var fullNames: [ObjectIdentifier: String] = [:]
        for (name, p) in model.namedParameters { fullNames[ObjectIdentifier(p)] = name }
        var shapes: [ObjectIdentifier: [Int]] = [:]
        var outputShape: [Int]?
        if let input {
            let wasTraining = model.isTraining
            model.eval()
            defer { model.isTraining = wasTraining }
            if let sequential = model as? Sequential {
                for (layer, step) in zip(sequential.layers, try sequential.trace(input)) {
                    shapes[ObjectIdentifier(layer)] = step.output.shape
                }
                outputShape = sequential.layers.last.flatMap { shapes[ObjectIdentifier($0)] }
            } else {
                outputShape = try model.forward(input).shape
                shapes[ObjectIdentifier(model)] = outputShape
            }
        }
        var nodes = [GraphNode(name: "input", op: "IO Node", outputShape: input?.shape, attributes: "")]

        func typeName(_ layer: Layer) -> String { String(describing: type(of: layer)) }

        /// Adds `layer`'s nodes under `scope`, fed by node `from`; returns its output node.
        func walk(_ layer: Layer, scope: String, from: String) -> String {
            guard let container = layer as? LayerContainer else {
                var inputs = [from]
                for (local, p) in layer.namedParameters {
                    let name = scope + "/" + local
                    nodes.append(GraphNode(name: name, op: "Parameter", outputShape: p.shape,
                                           attributes: fullNames[ObjectIdentifier(p)] ?? local))
                    inputs.append(name)
                }
                let name = scope + "/" + typeName(layer)
                nodes.append(GraphNode(name: name, op: typeName(layer), inputs: inputs,
                                       outputShape: shapes[ObjectIdentifier(layer)], attributes: layer.summary))
                return name
            }
            var previous = from
            for (i, child) in container.sublayers.enumerated() {
                previous = walk(child, scope: scope + "/" + typeName(child) + "[" + childName(child, in: layer, index: i) + "]",
                                from: previous)
            }
            if layer is Residual {
                let name = scope + "/add"
                nodes.append(GraphNode(name: name, op: "Add", inputs: [previous, from],
                                       outputShape: shapes[ObjectIdentifier(layer)], attributes: "x + block(x)"))
                previous = name
            } else if let shape = shapes[ObjectIdentifier(layer)], let i = nodes.lastIndex(where: { $0.name == previous }),
                      nodes[i].outputShape == nil {
                nodes[i].outputShape = shape
            }
            return previous
        }
        let last = walk(model, scope: typeName(model), from: "input")
        nodes.append(GraphNode(name: "output", op: "IO Node", inputs: [last], outputShape: outputShape, attributes: ""))
        return nodes
    }

    /// The name a container gives `child` in its parameter names (`rnn` in `rnn.weight_ih_l0`),
    /// else its index (`Sequential`'s names are indices).
    static func childName(_ child: Layer, in container: Layer, index: Int) -> String {
        if !(container is Sequential), let (local, p) = child.namedParameters.first,
           let (full, _) = container.namedParameters.first(where: { $0.parameter === p }),
           full.hasSuffix("." + local) {
            return String(full.dropLast(local.count + 1))
        }
        return "\(index)"
    }

    /// A recorded autodiff computation: one node per value under `output` (leaves are `Parameter`
    /// when they require a gradient, else `Constant`; other nodes carry their op's name), inputs as
    /// recorded (`Variable.inputs`), shapes from the values.
    public static func nodes(of output: Variable) -> [GraphNode] {
        var order: [Variable] = []
        var seen: Set<ObjectIdentifier> = []
        // Iterative post-order depth-first search: a long chain must not overflow the stack.
        var stack: [(Variable, Int)] = [(output, 0)]
        seen.insert(ObjectIdentifier(output))
        while let (v, k) = stack.popLast() {
            let inputs = v.inputs
            if k < inputs.count {
                stack.append((v, k + 1))
                let next = inputs[k]
                if seen.insert(ObjectIdentifier(next)).inserted { stack.append((next, 0)) }
            } else {
                order.append(v)
            }
        }
        var names: [ObjectIdentifier: String] = [:]
        var nodes: [GraphNode] = []
        for (i, v) in order.enumerated() {
            let op = v.op ?? (v.requiresGrad ? "Parameter" : "Constant")
            let name = "\(op)_\(i)"
            names[ObjectIdentifier(v)] = name
            nodes.append(GraphNode(name: name, op: op, inputs: v.inputs.compactMap { names[ObjectIdentifier($0)] },
                                   outputShape: v.shape, attributes: ""))
        }
        return nodes
    }
}
