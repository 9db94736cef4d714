/// `REPORT` (version 4): the result of a train task.
///
/// Answered with `ACK` once the task's round has closed and its result is
/// durable (the model version the round produced), or with `ERROR`:
/// `unknown_task` (44) for a task the server did not give or no longer
/// holds, `round_closed` (45) when the round closed or was abandoned without
/// this report. Reporting the same task again (a retry after a lost answer)
/// gets the same answer; the update counts once.
public struct Report: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .report, name: "REPORT", label: "report", sinceVersion: 4, direction: .toServer)

    /// Bit 0 of `flags`: the blob holds `W - W_base` against the task's model version.
    public static let flagDelta: UInt8 = 1

    public var taskID: UInt64
    /// The samples this task trained on (> 0): a count, never a running total.
    public var samples: UInt64
    public var isDelta: Bool
    public var tensors: [Tensor]
    /// How the blob is written (not a field: the blob says it).
    public var compression: Compression
    public var encoding: ValueEncoding
    public var rounding: ValueEncoding.Rounding

    public init(
        taskID: UInt64, samples: UInt64, tensors: [Tensor], isDelta: Bool = false,
        compression: Compression = .shuffleZlib, encoding: ValueEncoding = .float32,
        rounding: ValueEncoding.Rounding = .nearest
    ) {
        self.taskID = taskID
        self.samples = samples
        self.isDelta = isDelta
        self.tensors = tensors
        self.compression = compression
        self.encoding = encoding
        self.rounding = rounding
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u64(samples)
        w.u8(isDelta ? Self.flagDelta : 0)
        TensorBlob.encode(
            tensors, compression: compression, level: 1, encoding: encoding, rounding: rounding, into: &w)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError) -> Report {
        let taskID = try r.u64("task id")
        let samples = try r.u64("samples")
        let flags = try r.u8("report flags")
        if flags & ~flagDelta != 0 { throw CodecError(.malformedPayload, "report flags \(flags): undefined bits set") }
        if taskID == 0 { throw CodecError(.malformedPayload, "task id 0") }
        var limits = limits
        limits.valueEncodings = limits.version3Encodings | ValueEncoding.float32.bit
        var probe = r
        let header = try TensorBlob.header(&probe, limits: limits)
        let tensors = try TensorBlob.decode(&r, limits: limits)
        let first = header.encodings.first ?? .float32
        return Report(
            taskID: taskID, samples: samples, tensors: tensors, isDelta: flags & flagDelta != 0,
            compression: header.compression, encoding: first)
    }
}
