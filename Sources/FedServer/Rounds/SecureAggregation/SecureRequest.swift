import FedCodec

/// The requests of secure aggregation a client sends (`SECAGG_KEYS`,
/// `SECAGG_SHARES`, `SECAGG_INPUT`, `SECAGG_UNMASK`, and with the consistency check
/// `SECAGG_SIGNED_KEYS`, `SECAGG_CONSISTENCY`).
enum SecureRequest {
    /// The task a secure-aggregation request names; nil for any other message.
    static func taskID(of message: AnyProtocolMessage) -> UInt64? {
        if let m = message.as(SecAggKeys.self) { return m.taskID }
        if let m = message.as(SecAggShares.self) { return m.taskID }
        if let m = message.as(SecAggInput.self) { return m.taskID }
        if let m = message.as(SecAggUnmask.self) { return m.taskID }
        if let m = message.as(SecAggSignedKeys.self) { return m.keys.taskID }
        if let m = message.as(SecAggConsistency.self) { return m.taskID }
        return nil
    }
}
