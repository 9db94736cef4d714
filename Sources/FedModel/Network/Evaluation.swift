import Foundation

/// Accuracy, per-class accuracy and the confusion matrix of predictions.
public struct Evaluation: Sendable, Equatable {
    /// `confusion[actual][predicted]`: how many samples of class `actual` were predicted as `predicted`.
    public let confusion: [[Int]]

    public init(predicted: [Int], actual: [UInt8], classes: Int = 10) {
        precondition(predicted.count == actual.count)
        var m = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, a) in zip(predicted, actual) { m[Int(a)][p] += 1 }
        confusion = m
    }

    public var total: Int { confusion.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int { confusion.indices.reduce(0) { $0 + confusion[$1][$1] } }
    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    /// Accuracy within each actual class (nil for a class with no samples).
    public var perClass: [Double?] {
        confusion.indices.map { c in
            let n = confusion[c].reduce(0, +)
            return n == 0 ? nil : Double(confusion[c][c]) / Double(n)
        }
    }

    /// A printable report: overall accuracy, per-class accuracy, and the matrix.
    public func report() -> String {
        var lines = [String(format: "accuracy %.4f (%d of %d)", accuracy, correct, total), "per class:"]
        for (c, a) in perClass.enumerated() {
            lines.append("  \(c): " + (a.map { String(format: "%.4f", $0) } ?? "no samples"))
        }
        lines.append("confusion (rows: actual, columns: predicted):")
        let width = max(4, String(confusion.flatMap { $0 }.max() ?? 0).count + 1)
        func pad(_ s: String) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
        lines.append("    " + confusion.indices.map { pad(String($0)) }.joined())
        for (c, row) in confusion.enumerated() {
            lines.append(pad(String(c)) + row.map { pad(String($0)) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}

extension Trainer {
    /// Predicts every sample of `data` and compares with its labels.
    public func evaluate(_ data: Dataset) -> Evaluation {
        Evaluation(predicted: predict(data), actual: data.labels, classes: model.sizes.last!)
    }
}
