import FedCodec
import Foundation

/// A client's SCAFFOLD control variate `c_i` (Karimireddy et al. 2020,
/// option II), kept by the client from task to task.
///
/// Before training, ``correction(server:)`` gives `c - c_i`, what each local
/// step adds (scaled by the learning rate). After training `K` steps of
/// learning rate `lr` from `x` to `y`, ``update(server:start:end:steps:learningRate:)``
/// sets `c_i+ = c_i - c + (x - y) / (K lr)` and returns `c_i+ - c_i`, the
/// change the server folds into its own variate. A client that never
/// trained holds zeros.
///
/// Memory: one tensor list the model's size (4 bytes a weight).
/// ``save(to:)`` and ``init(contentsOf:)`` keep it across a restart, in the
/// checkpoint file format (version 0, datasets 0, the tensors).
public struct ClientControlVariate: Sendable, Equatable {
    /// `c_i`; nil until the first update (zeros).
    public private(set) var variate: [Tensor]?

    /// A variate of zeros.
    public init() {}

    /// The variate a previous ``save(to:)`` wrote.
    ///
    /// - Throws: the file system's error when `path` cannot be read, or a
    ///   `CodecError` when it is not a checkpoint file.
    public init(contentsOf path: String) throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let tensors = try Checkpoint.decode(bytes).tensors
        variate = tensors.isEmpty ? nil : tensors
    }

    /// Writes the variate to `path` (replacing the file atomically); a
    /// variate of zeros is written as no tensors.
    ///
    /// - Throws: the file system's error.
    public func save(to path: String) throws {
        let bytes = Checkpoint(version: 0, datasets: 0, tensors: variate ?? []).encode()
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// `c - c_i`: the drift correction of the next local training.
    public func correction(server c: [Tensor]) -> [Tensor] {
        guard let variate, variate.map(\.shape) == c.map(\.shape) else { return c }
        return zip(c, variate).map { s, own in
            var d = s
            for j in d.values.indices { d.values[j] = s.values[j] - own.values[j] }
            return d
        }
    }

    /// Option II's update after `steps` local steps of `learningRate` from
    /// `start` (x) to `end` (y_i): `c_i+ = c_i - c + (x - y_i) / (steps lr)`.
    /// Returns `c_i+ - c_i`. A variate of other shapes than `c` counts as zeros.
    ///
    /// - Precondition: `steps > 0`, `learningRate > 0`, and `start`, `end` and `c` of one shape.
    public mutating func update(
        server c: [Tensor], start: [Tensor], end: [Tensor], steps: Int, learningRate: Double
    ) -> [Tensor] {
        precondition(steps > 0 && learningRate > 0)
        precondition(start.map(\.shape) == c.map(\.shape) && end.map(\.shape) == c.map(\.shape))
        let scale = Float(1 / (Double(steps) * learningRate))
        let old = variate.flatMap { $0.map(\.shape) == c.map(\.shape) ? $0 : nil }
        var next = c
        var change = c
        for t in c.indices {
            for j in c[t].values.indices {
                let own = old?[t].values[j] ?? 0
                let value = own - c[t].values[j] + (start[t].values[j] - end[t].values[j]) * scale
                next[t].values[j] = value
                change[t].values[j] = value - own
            }
        }
        variate = next
        return change
    }
}
