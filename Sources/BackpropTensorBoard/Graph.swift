/// A `GraphDef` for TensorBoard's Graphs tab: nodes with a name (slashes make name scopes, which
/// the tab draws as boxes), an op, inputs (names of other nodes) and the attributes PyTorch's
/// `add_graph` writes: `_output_shapes` (a list with one shape) and `attr` (a string).
public struct GraphNode: Equatable, Sendable {
    public var name: String
    public var op: String
    public var inputs: [String]
    /// The node's output shape, if known.
    public var outputShape: [Int]?
    /// Free text shown in the node's info card (PyTorch puts the op's attributes there).
    public var attributes: String

    public init(name: String, op: String, inputs: [String] = [], outputShape: [Int]? = nil, attributes: String = "") {
        self.name = name; self.op = op; self.inputs = inputs; self.outputShape = outputShape; self.attributes = attributes
    }

    /// `NodeDef`: name 1, op 2, input 3, attr 5 (map entries key 1, value 2, sorted by key).
    func encode(into w: inout ProtoWriter) {
        w.string(1, name)
        w.string(2, op)
        for i in inputs { w.string(3, i, always: true) }
        // Map entries in key order: "_output_shapes" < "attr".
        if let shape = outputShape {
            w.message(5) { entry in
                entry.string(1, "_output_shapes")
                entry.message(2) { value in          // AttrValue
                    value.message(1) { list in       // list: ListValue
                        list.message(7) { s in       // shape: TensorShapeProto
                            for d in shape { s.message(2) { dim in dim.int(1, Int64(d)) } }
                        }
                    }
                }
            }
        }
        w.message(5) { entry in
            entry.string(1, "attr")
            entry.message(2) { value in value.string(2, attributes, always: true) }  // s (a oneof)
        }
    }
}

/// `GraphDef`: node 1, versions 4 (`VersionDef` producer 1 = 22, as PyTorch writes).
func encodeGraph(_ nodes: [GraphNode]) -> [UInt8] {
    var w = ProtoWriter()
    for n in nodes { w.message(1) { n.encode(into: &$0) } }
    w.message(4) { $0.int(1, 22) }
    return w.bytes
}
