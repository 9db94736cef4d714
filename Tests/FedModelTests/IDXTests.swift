import Foundation
import Testing

@testable import FedModel

@Suite("IDX files")
struct IDXTests {
    func idx(rank: Int, dims: [Int], type: UInt8 = 0x08, data: [UInt8]? = nil) -> [UInt8] {
        var b: [UInt8] = [0, 0, type, UInt8(rank)]
        for d in dims { b += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
        return b + (data ?? [UInt8](repeating: 7, count: dims.reduce(1, *)))
    }

    func reason(_ bytes: [UInt8], rank: Int) -> String? {
        do throws(IDXError) {
            _ = try IDX.parse(bytes, path: "f", expectedRank: rank)
            return nil
        } catch { return error.reason }
    }

    @Test func validImages() throws {
        let f = try IDX.parse(idx(rank: 3, dims: [2, 3, 4]), path: "f", expectedRank: 3)
        #expect(f.dims == [2, 3, 4] && f.data.count == 24)
    }

    @Test func wrongMagic() {
        #expect(
            reason([0x50, 0x4B, 3, 4] + [UInt8](repeating: 0, count: 20), rank: 3)?.contains("not an IDX file") == true)
    }

    @Test func wrongType() {
        #expect(reason(idx(rank: 1, dims: [3], type: 0x0D), rank: 1)?.contains("not unsigned byte") == true)
    }

    @Test func wrongDims() {
        #expect(reason(idx(rank: 1, dims: [3]), rank: 3)?.contains("has 1 dimensions, expected 3") == true)
    }

    @Test func truncatedData() {
        #expect(reason(Array(idx(rank: 3, dims: [2, 3, 4]).dropLast()), rank: 3)?.contains("truncated") == true)
    }

    @Test func truncatedHeader() {
        #expect(reason(Array(idx(rank: 3, dims: [2, 3, 4]).prefix(9)), rank: 3)?.contains("truncated") == true)
        #expect(reason([0, 0], rank: 3)?.contains("truncated") == true)
    }

    @Test func trailingBytes() {
        #expect(reason(idx(rank: 1, dims: [3]) + [1], rank: 1)?.contains("after the data") == true)
    }

    @Test func hugeDims() {
        #expect(reason(idx(rank: 3, dims: [60000, 28000, 28000], data: []), rank: 3)?.contains("exceed") == true)
    }

    @Test func corruptGzip() {
        #expect(reason([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 0xFF, 0xFF], rank: 1)?.contains("gzip") == true)
    }

    @Test("Labels and images of different counts are refused, naming the file")
    func mismatchedCounts() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = dir.appendingPathComponent("img"), labels = dir.appendingPathComponent("lab")
        try Data(idx(rank: 3, dims: [3, 2, 2])).write(to: images)
        try Data(idx(rank: 1, dims: [2], data: [1, 2])).write(to: labels)
        #expect(throws: IDXError.self) { try IDX.dataset(images: images.path, labels: labels.path) }
        #expect(throws: IDXError.self) {
            try IDX.dataset(images: dir.appendingPathComponent("missing").path, labels: labels.path)
        }
    }
}
