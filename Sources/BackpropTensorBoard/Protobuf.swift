/// A write-only protocol-buffer encoder for the handful of TensorBoard messages this module
/// writes (`Event`, `Summary`, `HistogramProto`, `TensorProto`, `GraphDef`, `NodeDef`,
/// `AttrValue`).
///
/// Why hand-written rather than apple/swift-protobuf: the module only ever *writes* seven small
/// messages, which needs four wire types (varint, 64-bit, length-delimited, 32-bit) in ~80 lines;
/// swift-protobuf would add a package dependency and generated code to commit and keep in step
/// with the `.proto` files for no gain in what is written. The byte output is checked against
/// files written by the `tensorboard` Python package (Tests/BackpropTensorBoardTests).
///
/// Fields are written in field-number order and proto3 defaults (0, "", empty) are left out,
/// except members of a `oneof`, which are always written — exactly what the reference
/// implementation does, so the bytes match.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    init() {}

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) {
        varint(UInt64(field) << 3 | wireType)
    }

    private mutating func fixed64(_ v: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private mutating func fixed32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    /// int64 / int32 / enum / bool field (negative values as ten-byte two's complement).
    mutating func int(_ field: Int, _ value: Int64, always: Bool = false) {
        guard value != 0 || always else { return }
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func double(_ field: Int, _ value: Double, always: Bool = false) {
        guard value.bitPattern != 0 || always else { return }
        key(field, 1)
        fixed64(value.bitPattern)
    }

    mutating func float(_ field: Int, _ value: Float, always: Bool = false) {
        guard value.bitPattern != 0 || always else { return }
        key(field, 5)
        fixed32(value.bitPattern)
    }

    mutating func bytes(_ field: Int, _ value: [UInt8], always: Bool = false) {
        guard !value.isEmpty || always else { return }
        key(field, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ field: Int, _ value: String, always: Bool = false) {
        bytes(field, Array(value.utf8), always: always)
    }

    /// An embedded message (always written when called: a set sub-message is present).
    mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        bytes(field, inner.bytes, always: true)
    }

    /// `repeated double` (packed, as proto3 writes it).
    mutating func packedDoubles(_ field: Int, _ values: [Double]) {
        guard !values.isEmpty else { return }
        key(field, 2)
        varint(UInt64(values.count * 8))
        bytes.reserveCapacity(bytes.count + values.count * 8)
        for v in values { fixed64(v.bitPattern) }
    }
}
