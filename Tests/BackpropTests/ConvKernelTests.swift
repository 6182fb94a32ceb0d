import XCTest
@testable import Backprop
import BackpropKernels

/// The C lowering kernels (`bp_im2col`, `bp_col2im`) under every instruction-set version, the
/// column-blocked products of Conv2D, and Sequential's sliced stretches (`BatchSliceable`).
final class ConvKernelTests: XCTestCase {
    override func tearDown() { Kernels.limitInstructionSet(to: 4) }

    private func random(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-1, 1, using: &rng)
        return t
    }

    /// |a − b| ≤ tolerance · max(1, |b|) element by element.
    private func assertClose(_ a: [Float], _ b: [Float], _ tolerance: Float, _ what: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (i, (u, v)) in zip(a, b).enumerated() where !(abs(u - v) <= tolerance * max(1, abs(v))) {
            XCTFail("\(what) element \(i): \(u) vs \(v)", file: file, line: line)
            return
        }
    }

    private struct Geometry {
        var c: Int, o: Int, k: (Int, Int), s: (Int, Int), p: (Int, Int), h: Int, w: Int
    }

    /// Forward output, δ of the input and dW of Conv2D against the definition summed directly in
    /// Double, for image widths that take every branch of the row copy (< 4, 4…7, 8…15, ≥ 16 and
    /// not a multiple of 16), strides, rectangular kernels and paddings, and LeNet's second layer
    /// (whose products are cut into blocks, see `SmallProducts.limit`) — under each kernel version,
    /// through the row lowering (`Conv2D+RowLowering`) where it applies and through im2col.
    /// Tolerance 1e-4 relative (Float sums of at most 400 terms of size ≤ 1).
    func testConvMatchesDirectSumUnderEveryVersion() throws {
        let cases = [
            Geometry(c: 2, o: 3, k: (3, 3), s: (1, 1), p: (1, 1), h: 4, w: 3),      // rows of 3
            Geometry(c: 2, o: 3, k: (3, 2), s: (1, 1), p: (2, 1), h: 5, w: 6),      // rows of 6 and 9
            Geometry(c: 3, o: 2, k: (5, 5), s: (1, 1), p: (2, 2), h: 11, w: 14),    // rows of 14 and 18
            Geometry(c: 1, o: 4, k: (5, 5), s: (1, 1), p: (2, 2), h: 6, w: 33),     // rows of 33 and 37
            Geometry(c: 2, o: 3, k: (3, 2), s: (2, 1), p: (1, 2), h: 5, w: 7),      // strided rows
            Geometry(c: 2, o: 2, k: (2, 3), s: (1, 2), p: (0, 0), h: 5, w: 9),      // no padding, stride 2 across
            Geometry(c: 16, o: 32, k: (5, 5), s: (1, 1), p: (2, 2), h: 14, w: 14),  // LeNet conv2: product blocks
            // Row lowering (stride 1, C·kw ≥ 16): rows of 9 and 13, of 16 without padding across,
            // of 35 with a 2-wide border across a 3-wide kernel
            Geometry(c: 4, o: 3, k: (5, 5), s: (1, 1), p: (2, 2), h: 6, w: 9),
            Geometry(c: 8, o: 5, k: (3, 2), s: (1, 1), p: (1, 0), h: 5, w: 17),
            Geometry(c: 6, o: 4, k: (2, 3), s: (1, 1), p: (0, 2), h: 4, w: 33),
        ]
        XCTAssertGreaterThan(32 * 400 * 196, SmallProducts.limit, "LeNet's conv2 must take the blocked path")
        let lenetConv2 = try Conv2D(inChannels: 16, outChannels: 32, kernelSize: 5, padding: 2, seed: 1)
        XCTAssertTrue(try lenetConv2.plan(for: [2, 16, 14, 14]).transposedWeightGradient, "and sum dW transposed")
        XCTAssertFalse(try Conv2D(inChannels: 3, outChannels: 2, kernelSize: 5, padding: 2, seed: 1)
            .plan(for: [2, 3, 11, 14]).transposedWeightGradient)
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for (index, g) in cases.enumerated() {
              for rows in [true, false] {   // the row lowering where it applies, and im2col's
                var rng = SeededGenerator(seed: UInt64(40 + index))
                let conv = try Conv2D(inChannels: g.c, outChannels: g.o, kernelSize: g.k, stride: g.s, padding: g.p, rng: &rng)
                conv.allowsRowLowering = rows
                let lowered = try conv.plan(for: [2, g.c, g.h, g.w]).rows
                XCTAssertEqual(lowered, rows && g.s == (1, 1) && g.c * g.k.1 >= 16, "case \(index)")
                if rows && !lowered { continue }
                let what = "level \(level), case \(index)\(lowered ? ", row lowering" : "")"
                let n = 2
                let x = try random([n, g.c, g.h, g.w], seed: UInt64(50 + index))
                let y = try conv.forward(x).copy()
                let ho = y.shape[2], wo = y.shape[3]
                let dy = try random(y.shape, seed: UInt64(60 + index))
                conv.zeroGrad()
                let dx = try conv.backward(dy).copy()
                var expectedY = [Double](repeating: 0, count: y.count)
                var expectedDX = [Double](repeating: 0, count: x.count)
                var expectedDW = [Double](repeating: 0, count: conv.weight.value.count)
                let wv = conv.weight.value.scalars, xv = x.scalars, gv = dy.scalars
                for b in 0..<n { for o in 0..<g.o { for oy in 0..<ho { for ox in 0..<wo {
                    let yi = ((b * g.o + o) * ho + oy) * wo + ox
                    expectedY[yi] = Double(conv.bias!.value[o])
                    for c in 0..<g.c { for i in 0..<g.k.0 { for j in 0..<g.k.1 {
                        let iy = oy * g.s.0 - g.p.0 + i, ix = ox * g.s.1 - g.p.1 + j
                        guard iy >= 0, iy < g.h, ix >= 0, ix < g.w else { continue }
                        let xi = ((b * g.c + c) * g.h + iy) * g.w + ix, wi = ((o * g.c + c) * g.k.0 + i) * g.k.1 + j
                        expectedY[yi] += Double(wv[wi]) * Double(xv[xi])
                        expectedDX[xi] += Double(wv[wi]) * Double(gv[yi])
                        expectedDW[wi] += Double(gv[yi]) * Double(xv[xi])
                    } } }
                } } } }
                assertClose(y.scalars, expectedY.map { Float($0) }, 1e-4, "\(what): forward")
                assertClose(dx.scalars, expectedDX.map { Float($0) }, 1e-4, "\(what): δ of the input")
                assertClose(conv.weight.grad.scalars, expectedDW.map { Float($0) }, 1e-4, "\(what): dW")
                // A second pass without zeroGrad adds to dW (β = 1; the transposed dW of LeNet's
                // conv2 is then added into the existing gradient, not written over it).
                _ = try conv.forward(x)
                _ = try conv.backward(dy)
                assertClose(conv.weight.grad.scalars, expectedDW.map { Float(2 * $0) }, 1e-4, "\(what): dW accumulated")
              }
            }
        }
    }

    /// `bp_col2im` and `bp_im2col` against their definitions, under every version, on geometries
    /// that take each branch of the AVX-512 versions (rows of 1, 14, 16, 17 and 33 positions: one
    /// and several 16-lane chunks, partial ones; heights not a multiple of 4; padding wider than
    /// the kernel; rectangular kernels; strides, which keep the plane version). col2im sums each
    /// position's terms in (i, j) order from 0, as every version must: results are compared bit
    /// for bit. The buffers are surrounded by NaN guards that must stay untouched.
    func testLoweringKernelsMatchDefinitionUnderEveryVersion() {
        let cases: [bp_conv_geometry] = [(1, 28, 28, 5, 5, 1, 1, 2, 2), (16, 14, 14, 5, 5, 1, 1, 2, 2), (2, 5, 16, 3, 3, 1, 1, 1, 1),
                                         (3, 6, 17, 3, 5, 1, 1, 1, 2), (1, 3, 33, 2, 2, 1, 1, 3, 3), (2, 7, 1, 3, 1, 1, 1, 1, 0),
                                         (2, 9, 14, 4, 3, 1, 1, 0, 0), (2, 7, 9, 3, 3, 2, 2, 1, 1), (1, 8, 20, 2, 5, 1, 3, 0, 2)]
            .map { c, h, w, kh, kw, sh, sw, ph, pw in
                bp_conv_geometry(channels: c, height: h, width: w, kernel_h: kh, kernel_w: kw, stride_h: sh, stride_w: sw,
                                 pad_h: ph, pad_w: pw, out_h: (h + 2 * ph - kh) / sh + 1, out_w: (w + 2 * pw - kw) / sw + 1)
            }
        let guardCount = 40
        for (index, g) in cases.enumerated() {
            let c = g.channels, h = g.height, w = g.width, ho = g.out_h, wo = g.out_w
            let k = c * g.kernel_h * g.kernel_w, p = ho * wo, ld = p + 3
            var rng = SeededGenerator(seed: UInt64(90 + index))
            let x = (0..<(c * h * w)).map { _ in Float.random(in: -1...1, using: &rng) }
            let colsIn = (0..<(k * ld)).map { _ in Float.random(in: -1...1, using: &rng) }
            // Definitions: cols[(c, i, j), oy·wo + ox] = x[c, oy·sh − ph + i, ox·sw − pw + j] (0 outside);
            // dx[c, y, x] = Σ over (i, j) in order of the column entries im2col copies from there.
            var expectedCols = [Float](repeating: 0, count: k * p)
            var expectedDX = [Float](repeating: 0, count: c * h * w)
            for ch in 0..<c { for i in 0..<g.kernel_h { for j in 0..<g.kernel_w { for oy in 0..<ho { for ox in 0..<wo {
                let r = (ch * g.kernel_h + i) * g.kernel_w + j
                let iy = oy * g.stride_h - g.pad_h + i, ix = ox * g.stride_w - g.pad_w + j
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                expectedCols[r * p + oy * wo + ox] = x[(ch * h + iy) * w + ix]
                expectedDX[(ch * h + iy) * w + ix] += colsIn[r * ld + oy * wo + ox]
            } } } } }
            for level in KernelVersionTests.availableLevels {
                Kernels.limitInstructionSet(to: level)
                let what = "level \(level), case \(index)"
                var padded = [Float](repeating: 0, count: c * (h + 2 * g.pad_h) * (w + 2 * g.pad_w) + 1)
                var cols = [Float](repeating: .nan, count: k * ld + 2 * guardCount)
                var geometry = g
                cols.withUnsafeMutableBufferPointer { cb in
                    padded.withUnsafeMutableBufferPointer { pb in
                        bp_im2col(&geometry, x, pb.baseAddress, cb.baseAddress! + guardCount, ld)
                    }
                }
                for r in 0..<k {
                    for t in 0..<p where cols[guardCount + r * ld + t].bitPattern != expectedCols[r * p + t].bitPattern {
                        XCTFail("\(what): im2col row \(r) column \(t): \(cols[guardCount + r * ld + t]) vs \(expectedCols[r * p + t])")
                        return
                    }
                }
                XCTAssertTrue(cols.prefix(guardCount).allSatisfy(\.isNaN) && cols.suffix(guardCount).allSatisfy(\.isNaN),
                              "\(what): im2col wrote outside its rows")
                var dx = [Float](repeating: .nan, count: c * h * w + 2 * guardCount)
                dx.withUnsafeMutableBufferPointer { db in
                    padded.withUnsafeMutableBufferPointer { pb in
                        bp_col2im(&geometry, colsIn, ld, pb.baseAddress, db.baseAddress! + guardCount)
                    }
                }
                for t in 0..<(c * h * w) where dx[guardCount + t].bitPattern != expectedDX[t].bitPattern {
                    XCTFail("\(what): col2im position \(t): \(dx[guardCount + t]) vs \(expectedDX[t])")
                    return
                }
                XCTAssertTrue(dx.prefix(guardCount).allSatisfy(\.isNaN) && dx.suffix(guardCount).allSatisfy(\.isNaN),
                              "\(what): col2im wrote outside dx")
                // The consuming form: the same dx, and the image's column entries are 0 afterwards
                // (row padding past Ho·Wo untouched); a second call then gives 0.
                var consumed = colsIn + [Float](repeating: .nan, count: guardCount)
                var dx2 = [Float](repeating: .nan, count: c * h * w)
                consumed.withUnsafeMutableBufferPointer { cb in
                    padded.withUnsafeMutableBufferPointer { pb in
                        bp_col2im_consume(&geometry, cb.baseAddress!, ld, pb.baseAddress, &dx2)
                    }
                }
                XCTAssertEqual(dx2.map(\.bitPattern), Array(dx[guardCount..<(guardCount + c * h * w)]).map(\.bitPattern),
                               "\(what): col2im_consume's dx")
                for r in 0..<k {
                    XCTAssertTrue(consumed[(r * ld)..<(r * ld + p)].allSatisfy { $0 == 0 }, "\(what): row \(r) not cleared")
                    for t in p..<ld { XCTAssertEqual(consumed[r * ld + t].bitPattern, colsIn[r * ld + t].bitPattern, "\(what): row padding written") }
                }
                XCTAssertTrue(consumed.suffix(guardCount).allSatisfy(\.isNaN), "\(what): col2im_consume wrote past its rows")
                consumed.withUnsafeMutableBufferPointer { cb in
                    padded.withUnsafeMutableBufferPointer { pb in
                        bp_col2im_consume(&geometry, cb.baseAddress!, ld, pb.baseAddress, &dx2)
                    }
                }
                XCTAssertTrue(dx2.allSatisfy { $0 == 0 }, "\(what): a consumed buffer gives dx = 0")
            }
        }
    }

    func testProductBlocks() {
        // LeNet conv2 per image: forward 2.5 M multiply-adds → columns padded 196 → 208, terms in
        // blocks of 144 (144, 144, 112); dcols → 3 blocks of 66; dWᵀ rows of 144
        XCTAssertTrue(Conv2D.forwardColumns(32, 400, 196, smallKernels: true) == (stride: 208, terms: 144))
        XCTAssertEqual(Conv2D.columnBlock(32, 400, 196, smallKernels: true), 66)
        XCTAssertEqual(Conv2D.columnBlock(400, 32, 196, smallKernels: true), 66)
        XCTAssertTrue(Conv2D.weightGradientTransposed(out: 32, k: 400, terms: 196))
        XCTAssertEqual(Conv2D.weightGradientRows(out: 32, k: 400, terms: 196, smallKernels: true), 144)   // 144, 144, 112
        XCTAssertLessThanOrEqual(144 * 196 * 32, SmallProducts.limit)
        // LeNet conv1 (313 K, 400 dW outputs): one product each, K = 25 < 32 needs no padding
        XCTAssertTrue(Conv2D.forwardColumns(16, 25, 784, smallKernels: true) == (stride: 784, terms: 25))
        XCTAssertTrue(Conv2D.forwardColumns(16, 25, 785, smallKernels: true) == (stride: 785, terms: 25))
        XCTAssertEqual(Conv2D.columnBlock(16, 25, 784, smallKernels: true), 784)
        XCTAssertFalse(Conv2D.weightGradientTransposed(out: 16, k: 25, terms: 784))   // one "TN" product
        // leNetWide conv2 (10 M): forward in 13 blocks of 64 terms; dcols: too many thin blocks, one packed product
        XCTAssertTrue(Conv2D.forwardColumns(64, 800, 196, smallKernels: true) == (stride: 208, terms: 64))
        // a forward too large for 16 blocks: one packed product of the unpadded columns
        XCTAssertTrue(Conv2D.forwardColumns(256, 2304, 196, smallKernels: true) == (stride: 196, terms: 2304))
        XCTAssertEqual(Conv2D.columnBlock(64, 800, 196, smallKernels: true), 196)
        XCTAssertEqual(Conv2D.weightGradientRows(out: 64, k: 800, terms: 196, smallKernels: true), 64)    // 13 blocks of dWᵀ rows
        // a block that would make OpenBLAS malloc (6 output channels: columns 1…8 past 16): all rows, packed
        XCTAssertEqual(Conv2D.weightGradientRows(out: 6, k: 2400, terms: 196, smallKernels: true), 2400)
        XCTAssertEqual(Conv2D.columnBlock(4, 4, 0, smallKernels: true), 1)
        // OpenBLAS cores without the small kernels (`Haswell`, `Zen`): forward and dcols as one product each
        XCTAssertTrue(Conv2D.forwardColumns(32, 400, 196, smallKernels: false) == (stride: 196, terms: 400))
        XCTAssertEqual(Conv2D.columnBlock(400, 32, 196, smallKernels: false), 196)
        XCTAssertEqual(Conv2D.weightGradientRows(out: 32, k: 400, terms: 196, smallKernels: false), 400)
        XCTAssertEqual(BLAS.hasSmallMatrixKernels, BLAS.rank(ofCore: BLAS.coreName) == 4, "the core in use: \(BLAS.coreName)")
        for (m, k, n) in [(32, 400, 196), (7, 300, 1001), (1, 1, 5)] {
            let b = Conv2D.columnBlock(m, k, n, smallKernels: true)
            XCTAssertLessThanOrEqual(m * k * b, max(SmallProducts.limit, m * k), "\(m)×\(k)×\(n)")
            XCTAssertGreaterThanOrEqual(b, 1)
        }
    }

    /// OpenBLAS's rule (0.3.21, SkylakeX; see `SmallProducts.kernelColumns`): an untransposed
    /// product within the small-matrix limit with K ≥ 32 mallocs when its last 1–8 columns are
    /// left over from runs of 16. No forward product `forwardColumns` plans may do that: over a
    /// range of shapes, every block of terms is within the limit or the product is one packed
    /// call, the blocks tile the terms, and none allocates. The old 66/66/64 column split of
    /// LeNet's conv2 would fail this.
    func testForwardBlocksAvoidOpenBLASMallocingTail() {
        XCTAssertTrue(SmallProducts.productAllocates(32, 400, 66))     // the former 66-column blocks
        XCTAssertTrue(SmallProducts.productAllocates(32, 400, 4))
        XCTAssertFalse(SmallProducts.productAllocates(32, 400, 64))
        XCTAssertFalse(SmallProducts.productAllocates(32, 400, 73))    // a masked tail of 9
        XCTAssertFalse(SmallProducts.productAllocates(16, 25, 66))     // K < 32
        XCTAssertFalse(SmallProducts.productAllocates(32, 400, 200))   // above the limit: packed
        for m in [1, 6, 16, 32, 64] {
            for k in [1, 25, 31, 32, 150, 400, 800] {
                for n in [1, 4, 8, 9, 16, 66, 100, 196, 392, 784, 1000] {
                    let (ld, terms) = Conv2D.forwardColumns(m, k, n, smallKernels: true), what = "\(m)×\(k)×\(n)"
                    XCTAssertGreaterThanOrEqual(ld, n, what)
                    XCTAssertLessThan(ld - n, SmallProducts.kernelColumns, what)
                    XCTAssertGreaterThanOrEqual(terms, 1, what)
                    XCTAssertLessThanOrEqual(terms, max(k, 1), what)
                    for t0 in stride(from: 0, to: max(k, 1), by: terms) {
                        let tb = min(terms, max(k, 1) - t0)
                        XCTAssertFalse(SmallProducts.productAllocates(m, tb, ld), "\(what): block of \(tb) terms at \(t0)")
                        if terms < k { XCTAssertLessThanOrEqual(m * tb * ld, SmallProducts.limit, what) }
                    }
                }
            }
        }
    }

    /// The row lowering's columns and their adjoint — `bp_im2col` and `bp_col2im(_consume)` of the
    /// 1 × kw geometry `Conv2D.rowGeometry` — and `bp_row_weights` against their definitions,
    /// under every version, bit for bit: rows of 1, 9, 14, 16, 17 and 33 positions, borders of 0–3,
    /// rectangular kernels. The adjoint sums each position's terms in j order from 0; its consuming
    /// form clears the image's (H + 2ph)·Wo entries of each row and nothing past them. NaN guards
    /// around the buffers and in the rows' padding must stay untouched.
    func testRowLoweringKernelsMatchDefinitionUnderEveryVersion() {
        let cases: [bp_conv_geometry] = [(16, 14, 14, 5, 5, 2, 2), (4, 6, 9, 5, 5, 2, 2), (8, 5, 17, 3, 2, 1, 0),
                                         (6, 4, 33, 2, 3, 0, 2), (3, 7, 1, 3, 1, 1, 0), (2, 3, 16, 2, 4, 3, 3)]
            .map { c, h, w, kh, kw, ph, pw in
                bp_conv_geometry(channels: c, height: h, width: w, kernel_h: kh, kernel_w: kw, stride_h: 1, stride_w: 1,
                                 pad_h: ph, pad_w: pw, out_h: h + 2 * ph - kh + 1, out_w: w + 2 * pw - kw + 1)
            }
        let guardCount = 40
        for (index, g) in cases.enumerated() {
            let c = g.channels, h = g.height, w = g.width, kw = g.kernel_w, wo = g.out_w
            let hp = h + 2 * g.pad_h, span = hp * wo, ld = span + 5, rows = c * kw
            var rng = SeededGenerator(seed: UInt64(190 + index))
            let x = (0..<(c * h * w)).map { _ in Float.random(in: -1...1, using: &rng) }
            let dR = (0..<(rows * ld)).map { _ in Float.random(in: -1...1, using: &rng) }
            // rows[(c, j), yp·Wo + ox] = x[c, yp − ph, ox + j − pw] (0 outside); dx[c, y, x] = Σ_j in order.
            var expectedRows = [Float](repeating: 0, count: rows * span)
            var expectedDX = [Float](repeating: 0, count: c * h * w)
            for ch in 0..<c { for j in 0..<kw { for yp in 0..<hp { for ox in 0..<wo {
                let iy = yp - g.pad_h, ix = ox + j - g.pad_w
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                expectedRows[(ch * kw + j) * span + yp * wo + ox] = x[(ch * h + iy) * w + ix]
            } } } }
            for ch in 0..<c { for y in 0..<h { for xx in 0..<w {
                var sum: Float = 0
                for j in 0..<kw where xx + g.pad_w - j >= 0 && xx + g.pad_w - j < wo {
                    sum += dR[(ch * kw + j) * ld + (y + g.pad_h) * wo + xx + g.pad_w - j]
                }
                expectedDX[(ch * h + y) * w + xx] = sum
            } } }
            for level in KernelVersionTests.availableLevels {
                Kernels.limitInstructionSet(to: level)
                let what = "level \(level), case \(index)"
                var geometry = Conv2D.rowGeometry(g)
                var padded = [Float](repeating: 0, count: c * hp * (w + 2 * g.pad_w) + 1)
                var out = [Float](repeating: .nan, count: rows * ld + 2 * guardCount)
                out.withUnsafeMutableBufferPointer { ob in
                    padded.withUnsafeMutableBufferPointer { pb in
                        bp_im2col(&geometry, x, pb.baseAddress, ob.baseAddress! + guardCount, ld)
                    }
                }
                for r in 0..<rows {
                    for t in 0..<span where out[guardCount + r * ld + t].bitPattern != expectedRows[r * span + t].bitPattern {
                        XCTFail("\(what): row \(r) column \(t): \(out[guardCount + r * ld + t]) vs \(expectedRows[r * span + t])")
                        return
                    }
                    XCTAssertTrue(out[(guardCount + r * ld + span)..<(guardCount + (r + 1) * ld)].allSatisfy(\.isNaN),
                                  "\(what): row \(r) written past its (H + 2ph)·Wo entries")
                }
                XCTAssertTrue(out.prefix(guardCount).allSatisfy(\.isNaN) && out.suffix(guardCount).allSatisfy(\.isNaN),
                              "\(what): row columns written outside the buffer")
                for consume in [Int32(0), 1] {
                    var source = dR + [Float](repeating: .nan, count: guardCount)
                    var dx = [Float](repeating: .nan, count: c * h * w + 2 * guardCount)
                    source.withUnsafeMutableBufferPointer { sb in
                        dx.withUnsafeMutableBufferPointer { db in
                            padded.withUnsafeMutableBufferPointer { pb in   // col2im's plane (baseline version)
                                if consume == 1 {
                                    bp_col2im_consume(&geometry, sb.baseAddress!, ld, pb.baseAddress, db.baseAddress! + guardCount)
                                } else {
                                    bp_col2im(&geometry, sb.baseAddress!, ld, pb.baseAddress, db.baseAddress! + guardCount)
                                }
                            }
                        }
                    }
                    XCTAssertEqual(Array(dx[guardCount..<(guardCount + c * h * w)]).map(\.bitPattern), expectedDX.map(\.bitPattern),
                                   "\(what): adjoint, consume \(consume)")
                    XCTAssertTrue(dx.prefix(guardCount).allSatisfy(\.isNaN) && dx.suffix(guardCount).allSatisfy(\.isNaN),
                                  "\(what): adjoint wrote outside dx")
                    for r in 0..<rows {
                        let read = source[(r * ld)..<(r * ld + span)], kept = source[(r * ld + span)..<((r + 1) * ld)]
                        XCTAssertTrue(consume == 1 ? read.allSatisfy { $0 == 0 } : read.elementsEqual(dR[(r * ld)..<(r * ld + span)]),
                                      "\(what): row \(r), consume \(consume)")
                        XCTAssertTrue(kept.elementsEqual(dR[(r * ld + span)..<((r + 1) * ld)]), "\(what): row \(r)'s padding written")
                    }
                    XCTAssertTrue(source.suffix(guardCount).allSatisfy(\.isNaN), "\(what): adjoint wrote past the rows")
                }
            }
            // The weights as the row lowering reads them: rows[(i·out + o)·C·kw + c·kw + j] = w[o, c, i, j].
            let out = 3, kh = g.kernel_h
            let wt = (0..<(out * c * kh * kw)).map { Float($0) }
            var laid = [Float](repeating: .nan, count: wt.count)
            bp_row_weights(wt, &laid, out, c, kh, kw)
            for o in 0..<out { for ch in 0..<c { for i in 0..<kh { for j in 0..<kw {
                XCTAssertEqual(laid[(i * out + o) * c * kw + ch * kw + j], wt[((o * c + ch) * kh + i) * kw + j], "case \(index): row weights")
                XCTAssertEqual(Conv2D.rowWeightColumn((i * c + ch) * kw + j, channels: c, kernel: (kh, kw)), (ch * kh + i) * kw + j)
            } } } }
        }
    }

    /// The row lowering against im2col's on 40 random stride-1 geometries that take it (C·kw ≥ 16):
    /// kernels 2–6 high and 1–6 wide, borders from 0 to wider than the kernel, images from 1 row or
    /// column up, 1–3 images on 1 or 2 threads, with and without bias and δ of the input. Outputs and
    /// every gradient agree within 1e-5 relative (the two sum the same terms in another order).
    func testRowLoweringMatchesIm2colOnRandomGeometries() throws {
        var rng = SeededGenerator(seed: 77)
        var taken = 0
        for index in 0..<40 {
            let kh = Int.random(in: 2...6, using: &rng), kw = Int.random(in: 1...6, using: &rng)
            let c = (16 + kw - 1) / kw + Int.random(in: 0...3, using: &rng)
            let ph = Int.random(in: 0...(kh + 1), using: &rng), pw = Int.random(in: 0...(kw + 1), using: &rng)
            let h = Swift.max(1, kh - 2 * ph + Int.random(in: 0...9, using: &rng))
            let w = Swift.max(1, kw - 2 * pw + Int.random(in: 0...17, using: &rng))
            let o = Int.random(in: 1...9, using: &rng), n = Int.random(in: 1...3, using: &rng)
            let threads = Int.random(in: 1...2, using: &rng), bias = Bool.random(using: &rng)
            let inputGradient = Bool.random(using: &rng)
            guard h + 2 * ph >= kh, w + 2 * pw >= kw else { continue }
            let what = "case \(index): \(c)→\(o), \(kh)×\(kw), padding \(ph)×\(pw), \(n)×\(h)×\(w)"
            var results: [[[Float]]] = []
            for rows in [true, false] {
                var wrng = SeededGenerator(seed: UInt64(500 + index))
                let conv = try Conv2D(inChannels: c, outChannels: o, kernelSize: (kh, kw), stride: (1, 1), padding: (ph, pw),
                                      bias: bias, rng: &wrng)
                conv.allowsRowLowering = rows
                conv.useThreads(threads)
                conv.needsInputGradient = inputGradient
                let x = try random([n, c, h, w], seed: UInt64(600 + index))
                let y = try conv.forward(x).scalars
                XCTAssertEqual(conv.plan.rows, rows, what)
                let dy = try random(try conv.outputShape(for: x.shape), seed: UInt64(700 + index))
                conv.zeroGrad()
                let dx = try conv.backward(dy).scalars
                results.append([y, dx, conv.weight.grad.scalars, conv.bias?.grad.scalars ?? []])
            }
            taken += 1
            for (name, (a, b)) in zip(["y", "dx", "dW", "db"], zip(results[0], results[1])) {
                XCTAssertEqual(a.count, b.count, "\(what): \(name)")
                let worst = zip(a, b).map { abs($0 - $1) / Swift.max(1, abs($1)) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-5, "\(what): \(name)")
            }
        }
        XCTAssertGreaterThan(taken, 30)
    }

    /// The row lowering keeps W's layout between forwards only while W is bit for bit the same: a
    /// weight written through `data` (which moves no version) between two forwards must be used by
    /// the second, in the output and in δ of the input.
    func testRowWeightsFollowEveryWriteToW() throws {
        let conv = try Conv2D(inChannels: 16, outChannels: 32, kernelSize: 5, padding: 2, seed: 5)
        conv.useThreads(1)
        let x = try random([1, 16, 14, 14], seed: 6), dy = try random([1, 32, 14, 14], seed: 7)
        _ = try conv.forward(x)
        XCTAssertTrue(conv.plan.rows)
        let kept = try conv.forward(x).scalars               // the layout kept from the first call
        conv.weight.value.data[123] += 0.5                   // no version moves
        conv.weight.value.data[conv.weight.value.count - 1] = -2
        let y = try conv.forward(x).scalars
        conv.zeroGrad()
        let dx = try conv.backward(dy).scalars
        let fresh = try Conv2D(inChannels: 16, outChannels: 32, kernelSize: 5, padding: 2, seed: 5)
        fresh.useThreads(1)
        fresh.weight.value.data.update(from: conv.weight.value.data, count: conv.weight.value.count)
        XCTAssertTrue(try fresh.forward(x).scalars == y, "the forward used the kept layout, not the written weights")
        XCTAssertTrue(try fresh.backward(dy).scalars == dx, "δ of the input used the kept layout")
        XCTAssertFalse(kept == y, "the writes changed nothing")
    }

    /// The layer's products follow the OpenBLAS core in use, under each lowering of LeNet's conv2.
    /// im2col's: with the small-matrix kernels (`SkylakeX`) the forward runs in 3 blocks of terms
    /// over padded columns and dcols in 3 column blocks; under a core without them (`Haswell`,
    /// which every AVX2 CPU runs) each is one product. The row lowering's: 5 products each, over
    /// columns padded to 208 under `SkylakeX`, straight into the output under `Haswell`. The plan is
    /// remade for the same input shape when the core changes. Outputs and gradients agree between
    /// the two cores.
    func testProductsFollowTheBLASCore() throws {
        let best = BLAS.bestCore(forFlags: BLAS.cpuFlags())
        guard best.rank >= 3 else { throw XCTSkip("no AVX2: OpenBLAS's Haswell kernels cannot run here") }
        let initial = BLAS.coreName
        defer { try? BLAS.useCore(initial) }
        let x = try random([2, 16, 14, 14], seed: 42), dy = try random([2, 32, 14, 14], seed: 43)
        // Each lowering of LeNet's conv2 (im2col's columns, and the row lowering it takes by default).
        for rows in [false, true] {
            var rng = SeededGenerator(seed: 41)
            let conv = try Conv2D(inChannels: 16, outChannels: 32, kernelSize: (5, 5), stride: (1, 1), padding: (2, 2), rng: &rng)
            conv.useThreads(1)
            conv.allowsRowLowering = rows
            let mode = rows ? "row lowering" : "im2col"
            func pass() throws -> (y: [Float], dx: [Float], dw: [Float], calls: [ProductCall]) {
                let recorder = GEMMRecorder()
                gemmRecorder = recorder
                defer { gemmRecorder = nil }
                let y = try conv.forward(x).scalars
                conv.zeroGrad()
                let dx = try conv.backward(dy).scalars
                XCTAssertEqual(conv.plan.rows, rows, mode)
                return (y, dx, conv.weight.grad.scalars, recorder.calls)
            }
            func count(_ calls: [ProductCall], _ match: (ProductCall) -> Bool) -> Int { calls.filter(match).count }
            var reference: (y: [Float], dx: [Float], dw: [Float], calls: [ProductCall])?
            if best.rank >= 4 {
                try BLAS.useCore("SkylakeX")
                XCTAssertTrue(BLAS.hasSmallMatrixKernels)
                let blocked = try pass(), c = blocked.calls
                if rows {
                    XCTAssertEqual(count(c) { $0.m == 32 && $0.k == 80 && $0.n == 208 && $0.ldb == 272 }, 10,
                                   "forward: 5 kernel rows per image, columns padded to 208")
                    XCTAssertEqual(count(c) { !$0.transposeA && $0.m == 80 && $0.k == 196 && $0.n == 32 }, 10, "dWᵀ: 5 per image")
                    XCTAssertEqual(count(c) { $0.transposeA && $0.m == 80 && $0.n == 196 && $0.beta == 1 }, 10, "dR: 5 per image, β = 1")
                    XCTAssertEqual(c.count, 30)
                } else {
                    XCTAssertEqual(count(c) { $0.m == 32 && $0.k < 400 && $0.n == 208 }, 6, "forward: 3 blocks of terms per image")
                    XCTAssertEqual(count(c) { $0.transposeA && $0.m == 400 && $0.n == 66 }, 4, "dcols: 66, 66, 64 columns per image")
                    XCTAssertEqual(count(c) { !$0.transposeA && $0.m == 144 && $0.k == 196 && $0.n == 32 }, 4,
                                   "dWᵀ: rows 144, 144, 112 per image")
                }
                reference = blocked
            }
            try BLAS.useCore("Haswell")
            XCTAssertFalse(BLAS.hasSmallMatrixKernels)
            let packed = try pass(), c = packed.calls
            if rows {
                XCTAssertEqual(count(c) { $0.m == 32 && $0.k == 80 && $0.n == 196 && $0.ldc == 196 && $0.ldb == 256 }, 10,
                               "forward: 5 kernel rows per image, straight into the output")
                XCTAssertEqual(count(c) { !$0.transposeA && $0.m == 80 && $0.k == 196 && $0.n == 32 }, 10, "dWᵀ: 5 per image")
                XCTAssertEqual(count(c) { $0.transposeA && $0.m == 80 && $0.n == 196 && $0.beta == 1 }, 10, "dR: 5 per image, β = 1")
                XCTAssertEqual(c.count, 30)
            } else {
                XCTAssertTrue(c.filter { $0.transposeA && $0.m == 400 }.allSatisfy { $0.beta == 1 },
                              "dcols accumulates into the buffer col2im keeps zero")
                XCTAssertEqual(count(c) { $0.m == 32 && $0.k == 400 && $0.n == 196 && $0.ldc == 196 }, 2,
                               "forward: one product per image, straight into the output")
                XCTAssertEqual(count(c) { $0.transposeA && $0.m == 400 && $0.n == 196 }, 2, "dcols: one product per image")
                XCTAssertEqual(count(c) { !$0.transposeA && $0.m == 400 && $0.k == 196 && $0.n == 32 }, 2, "dWᵀ: one product per image")
            }
            if let reference {
                for (name, a, b) in [("y", packed.y, reference.y), ("dx", packed.dx, reference.dx), ("dW", packed.dw, reference.dw)] {
                    let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                    XCTAssertLessThan(worst, 1e-5, "\(mode): \(name) under Haswell against SkylakeX")
                }
            }
            // Passes after the first reuse the kept-zero column gradients: δ of the input must be that of
            // a fresh layer (values left in the buffer would add into it).
            let second = try pass()
            XCTAssertEqual(second.dx, packed.dx, "\(mode): a second backward under Haswell")
            let fresh = try Conv2D(inChannels: 16, outChannels: 32, kernelSize: (5, 5), stride: (1, 1), padding: (2, 2),
                                   rng: &rng)
            fresh.weight.value.data.update(from: conv.weight.value.data, count: conv.weight.value.count)
            fresh.bias!.value.data.update(from: conv.bias!.value.data, count: 32)
            fresh.useThreads(1)
            fresh.allowsRowLowering = rows
            _ = try fresh.forward(x)
            XCTAssertEqual(try fresh.backward(dy).scalars, packed.dx, "\(mode): the kept buffer against a fresh one")
        }
    }

    /// The forward products LeNet actually issues (single sample and a batch, one and two images
    /// per gemm; `gemm`'s record of the calls): none is of the allocating kind.
    func testLeNetForwardIssuesNoAllocatingProduct() throws {
        for (batch, imagesPerGemm) in [(1, 1), (3, 1), (3, 2)] {
            let model = try Architectures.leNet(seed: 1)
            for case let conv as Conv2D in model.layers { conv.imagesPerGemm = imagesPerGemm }
            let x = try random([batch, 1, 28, 28], seed: 3)
            _ = try model.evaluationForward(x)
            let recorder = GEMMRecorder()
            gemmRecorder = recorder
            defer { gemmRecorder = nil }
            _ = try model.evaluationForward(x)
            let calls = recorder.calls
            XCTAssertTrue(calls.contains { $0.m == 32 && ($0.lda == 80 || $0.lda == 400) }, "conv2's products are recorded")
            for c in calls where !c.transposeA && !c.transposeB {
                XCTAssertFalse(SmallProducts.productAllocates(c.m, c.k, c.n), "batch \(batch), G \(imagesPerGemm): \(c)")
            }
        }
    }

    /// The 2×2 max-pool backward kernel under every version: δ lands on each window's first
    /// maximum, every other input position is 0 — including an odd last row and column that no
    /// window covers — and a second call fully overwrites the first (exact comparison).
    /// The max-pool forward kernel with the preceding ReLU folded in (`relu` = 1), under every
    /// version: y = the window's maximum where it is > 0 or NaN, else +0, and the argmax that of
    /// the input itself (first maximum, first NaN), on rows of 1–17 windows with negative windows,
    /// zeros and NaN; with `relu` = 0 the plain maximum.
    func testMaxPool2x2ForwardWithReLUUnderEveryVersion() {
        for (h, w) in [(5, 7), (4, 4), (6, 35), (3, 2), (4, 11), (2, 16), (3, 26)] {
            var rng = SeededGenerator(seed: UInt64(h * 31 + w))
            let planes = 3, ho = h / 2, wo = w / 2
            var x = (0..<(planes * h * w)).map { _ in Float.random(in: -1...0.5, using: &rng) }
            for t in stride(from: 3, to: x.count, by: 17) { x[t] = 0 }
            for t in stride(from: 5, to: x.count, by: 29) { x[t] = .nan }
            var expectedY = [Float](repeating: 0, count: planes * ho * wo)
            var expectedArg = [Int32](repeating: 0, count: planes * ho * wo)
            for plane in 0..<planes { for oy in 0..<ho { for ox in 0..<wo {
                var best = -Float.infinity, at = 0
                for i in 0..<2 { for j in 0..<2 {
                    let idx = (2 * oy + i) * w + 2 * ox + j, v = x[plane * h * w + idx]
                    if (i == 0 && j == 0) || v > best || (v.isNaN && !best.isNaN) { if !best.isNaN { best = v; at = idx } }
                } }
                expectedY[(plane * ho + oy) * wo + ox] = best
                expectedArg[(plane * ho + oy) * wo + ox] = Int32(at)
            } } }
            for level in KernelVersionTests.availableLevels {
                Kernels.limitInstructionSet(to: level)
                for relu in [0, 1] {
                    let what = "level \(level), \(h)×\(w), relu \(relu)"
                    var y = [Float](repeating: -7, count: expectedY.count)
                    var arg = [Int32](repeating: -1, count: expectedY.count)
                    bp_maxpool2x2_forward(x, &y, &arg, planes, h, w, ho, wo, Int32(relu))
                    XCTAssertEqual(arg, expectedArg, what)
                    for t in y.indices {
                        let e = expectedY[t], want: Float = relu == 1 && !(e > 0) && !e.isNaN ? 0 : e
                        XCTAssertTrue(y[t].bitPattern == want.bitPattern || (y[t].isNaN && want.isNaN), "\(what): \(t): \(y[t]) vs \(want)")
                    }
                }
            }
        }
    }

    func testMaxPool2x2BackwardUnderEveryVersion() throws {
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            // 1–3, 5, 8, 13 and 17 windows a row: every branch of the kernel
            for (h, w) in [(5, 7), (4, 4), (6, 35), (3, 2), (4, 11), (2, 16), (3, 26)] {
                let what = "level \(level), \(h)×\(w)"
                let pool = try MaxPool2D(kernelSize: 2)
                let x = try random([2, 3, h, w], seed: UInt64(h * 100 + w))
                let y = try pool.forward(x)
                let ho = h / 2, wo = w / 2
                XCTAssertEqual(y.shape, [2, 3, ho, wo], what)
                _ = try pool.backward(try random(y.shape, seed: 1))        // leaves values to overwrite
                _ = try pool.forward(x)
                let dy = try random(y.shape, seed: 2)
                let dx = try pool.backward(dy).scalars
                var expected = [Float](repeating: 0, count: x.count)
                let xv = x.scalars, gv = dy.scalars
                for plane in 0..<6 { for oy in 0..<ho { for ox in 0..<wo {
                    var best = -Float.infinity, at = 0
                    for i in 0..<2 { for j in 0..<2 {
                        let idx = plane * h * w + (2 * oy + i) * w + 2 * ox + j
                        if xv[idx] > best { best = xv[idx]; at = idx }
                    } }
                    expected[at] = gv[(plane * ho + oy) * wo + ox]
                } } }
                XCTAssertEqual(dx, expected, what)
            }
        }
    }

    // MARK: - Sequential stretches

    private func smallLeNet(seed: UInt64) throws -> Sequential {
        var rng = SeededGenerator(seed: seed)
        return Sequential([
            try Conv2D(inChannels: 1, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            try Conv2D(inChannels: 3, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            Flatten(),
            try Dense(4 * 2 * 2, 6, rng: &rng),
            ReLU(),
            try Dense(6, 3, rng: &rng),
        ])
    }

    /// A max pooling into which a model's stretch folded the preceding ReLU still pools its input
    /// as it is when called on its own (forward and backward, and in `trace`): before, it kept
    /// applying that ReLU (all −3 pooled to 0).
    func testAFusedPoolingCalledOnItsOwnPoolsItsInput() throws {
        var rng = SeededGenerator(seed: 12)
        let conv = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, rng: &rng)
        let pool = try MaxPool2D(kernelSize: 2)
        let model = Sequential(conv, ReLU(), pool)
        model.useThreads(2)
        let x = try random([4, 1, 6, 6], seed: 13)
        let fused = try model(x).copy()
        XCTAssertTrue(pool.fusion.appliesPrecedingReLUMask, "the stretch folds the ReLU into the pooling")
        let negative = try Tensor([Float](repeating: -3, count: 16), shape: [1, 1, 4, 4])
        XCTAssertEqual(try pool.forward(negative).scalars, [-3, -3, -3, -3])
        let c = try conv.forward(x).copy()
        let fresh = try MaxPool2D(kernelSize: 2)
        let y = try pool.forward(c).copy()
        XCTAssertEqual(y.scalars, try fresh.forward(c).scalars)
        XCTAssertTrue(y.scalars.contains { $0 < 0 }, "conv's output pooled without a ReLU")
        let dy = try random(y.shape, seed: 14)
        XCTAssertEqual(try pool.backward(dy).scalars, try fresh.backward(dy).scalars)
        XCTAssertEqual(try model.trace(x).map(\.output.scalars)[2], try fresh.forward(try ReLU().forward(c)).scalars)
        XCTAssertEqual(try model(x).scalars, fused.scalars, "the model's own run is still fused, and the same")
    }

    /// One stretch of ten layers run as 2 or 3 concurrent slices (7 images: uneven slices) gives
    /// the outputs, δ of the input and every parameter gradient of the layers run one by one
    /// (1e-5 relative: only the slice-ordered sums of parameter gradients round differently),
    /// on a first step (β = 0 gradients) and an accumulating second backward.
    func testStretchMatchesLayerByLayer() throws {
        let x = try random([7, 1, 8, 8], seed: 5)
        var reference: [Float]?
        let blasThreads = BLAS.threadCount
        for threads in 1...3 {
            let model = try smallLeNet(seed: 9)
            model.useThreads(threads)
            XCTAssertEqual(model.threads, threads)
            model.zeroGrad()
            let y = try model.forward(x).copy()
            let dy = try random(y.shape, seed: 6)
            _ = try model.backward(dy)
            _ = try model.forward(x)
            let dx = try model.backward(dy).copy()
            let values = y.scalars + dx.scalars + model.parameters.flatMap(\.grad.scalars)
            if let reference { assertClose(values, reference, 1e-5, "\(threads) threads") } else { reference = values }
            XCTAssertEqual(BLAS.threadCount, blasThreads, "OpenBLAS threads restored after the slices")
        }
    }

    /// The in-place ReLU kernels of a stretch (forward after Conv2D and Dense, backward into
    /// the next layer's δ buffer) under every kernel version: same values as layer by layer.
    func testStretchUnderEveryVersion() throws {
        let x = try random([5, 1, 8, 8], seed: 21)
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            var reference: [Float]?
            for threads in [1, 2] {
                let model = try smallLeNet(seed: 22)
                model.useThreads(threads)
                model.zeroGrad()
                let y = try model.forward(x).copy()
                let dx = try model.backward(try random(y.shape, seed: 23)).copy()
                let values = y.scalars + dx.scalars + model.parameters.flatMap(\.grad.scalars)
                if let reference { assertClose(values, reference, 1e-5, "level \(level)") } else { reference = values }
            }
        }
    }

    /// Which layers form stretches: all of LeNet (conv … dense) with 2 threads, none with 1, and
    /// none for an MLP (dense layers alone keep OpenBLAS's threads); a layer that is not
    /// BatchSliceable ends a stretch, and appending a layer recomputes them.
    func testStretchSelection() throws {
        let lenet = try smallLeNet(seed: 1)
        XCTAssertEqual(lenet.threads, Parallelism.defaultThreads, "every core by default")
        lenet.useThreads(1)
        XCTAssertTrue(lenet.slicedStretches.isEmpty, "one thread: no stretch")
        lenet.useThreads(2)
        XCTAssertEqual(lenet.slicedStretches.map { [$0.start, $0.count] }, [[0, 10]])
        // Conv2D and Dense do not read their outputs in backward, so the ReLUs after them run in
        // place; before a max pooling the pooling applies the ReLU (forward and mask), and the
        // ReLU between the dense layers works in place both ways.
        let relus = [1, 4, 8].compactMap { lenet.layers[$0] as? ReLU }
        XCTAssertEqual(relus.count, 3)
        XCTAssertFalse(try XCTUnwrap(lenet.layers[0] as? Conv2D).backwardReadsOutput)
        XCTAssertFalse(try XCTUnwrap(lenet.layers[7] as? Dense).backwardReadsOutput)
        for relu in relus.prefix(2) {
            XCTAssertEqual(relu.fusion, Fusion(inPlaceForward: true, inPlaceBackward: true, maskAppliedByNext: true))
        }
        XCTAssertEqual(relus[2].fusion, Fusion(inPlaceForward: true, inPlaceBackward: true))
        for i in [2, 5] { XCTAssertEqual(try XCTUnwrap(lenet.layers[i] as? MaxPool2D).fusion, Fusion(appliesPrecedingReLUMask: true)) }
        let mlp = Sequential([try Dense(4, 5, seed: 1), ReLU(), try Dense(5, 3, seed: 2)])
        mlp.useThreads(2)
        XCTAssertTrue(mlp.slicedStretches.isEmpty, "dense layers alone are not sliced")
        var rng = SeededGenerator(seed: 3)
        let mixed = Sequential([try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, rng: &rng), Tanh(),
                                try MaxPool2D(kernelSize: 2), ReLU()])
        mixed.useThreads(2)
        XCTAssertEqual(mixed.slicedStretches.map { [$0.start, $0.count] }, [[2, 2]], "a lone Conv2D is no stretch")
        mixed.append(try MaxPool2D(kernelSize: 1))
        XCTAssertEqual(mixed.slicedStretches.map { [$0.start, $0.count] }, [[2, 3]])
        // and the mixed model computes what it computes layer by layer, forward and backward
        // (the stretch folds the ReLU's mask into the 1×1 max-pool: the general pooling path;
        // tanh gives negative pooled values, so the mask matters)
        let x = try random([3, 1, 6, 6], seed: 4)
        try XCTUnwrap((mixed.layers[0] as? Conv2D)?.bias).value.fill(-0.5)   // many windows pool to ≤ 0
        var runs: [[Float]] = []
        for threads in [2, 1] {
            mixed.useThreads(threads)
            mixed.zeroGrad()
            let y = try mixed.forward(x).copy()
            let dx = try mixed.backward(try random(y.shape, seed: 5)).copy()
            runs.append(y.scalars + dx.scalars + mixed.parameters.flatMap(\.grad.scalars))
        }
        assertClose(runs[0], runs[1], 1e-6, "mixed model")
    }

    /// A sliced forward (ReLUs in place) followed by a backward after switching to one thread
    /// still uses the right ReLU masks.
    func testThreadChangeBetweenForwardAndBackward() throws {
        let x = try random([4, 1, 8, 8], seed: 31)
        var results: [[Float]] = []
        for switchThreads in [false, true] {
            let model = try smallLeNet(seed: 32)
            model.useThreads(switchThreads ? 2 : 1)
            model.zeroGrad()
            let y = try model.forward(x)
            model.useThreads(1)
            let dx = try model.backward(try random(y.shape, seed: 33))
            results.append(dx.scalars + model.parameters.flatMap(\.grad.scalars))
        }
        assertClose(results[1], results[0], 1e-5, "forward with 2 slices, backward with 1")
    }

    /// Finite differences through the sliced stretch (2 slices): input and every parameter,
    /// step 1e-3, max error < 2e-3 (measured 5e-4; with step 1e-2 one weight's perturbation moves
    /// a max-pool winner and the error is 7e-3 with one slice and with two alike).
    func testStretchGradientCheck() throws {
        let model = try smallLeNet(seed: 3)
        model.useThreads(2)
        let x = try random([3, 1, 8, 8], seed: 11)
        let report = try GradientCheck.check(model, input: x, step: 1e-3)
        print("sliced stretch gradient check: \(report)")
        XCTAssertLessThan(report.maxError, 2e-3, "\(report)")
        XCTAssertGreaterThan(report.checked, 100)
    }

    /// A first layer that skips δ of its input (as training sets it) still gets its gradients
    /// inside a stretch, and the stretch returns the empty tensor.
    func testStretchWithoutInputGradient() throws {
        let x = try random([5, 1, 8, 8], seed: 12)
        var grads: [[Float]] = []
        for threads in [1, 2] {
            let model = try smallLeNet(seed: 4)
            model.useThreads(threads)
            model.needsInputGradient = false
            model.zeroGrad()
            let y = try model.forward(x)
            let dx = try model.backward(try random(y.shape, seed: 13))
            XCTAssertEqual(dx.count, 0, "\(threads) threads")
            grads.append(model.parameters.flatMap(\.grad.scalars))
        }
        assertClose(grads[1], grads[0], 1e-5, "gradients with 2 slices")
    }
}
