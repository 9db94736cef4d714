import Crypto
import FedSecureAggregation
import Foundation
import Testing

/// `Protocol/vectors/secagg_consistency.json` (written by `generate.py` with
/// Python's `cryptography`): the consistency check's cohort digest, the
/// statements signed and their Ed25519 signatures, for clients 1-3.
private struct ConsistencyVector: Decodable {
    struct Member: Decodable {
        let id: UInt32
        let name: String
    }
    struct Client: Decodable {
        let id: UInt32
        let encryptionKey: String
        let maskingKey: String
        let privateKey: String
        let publicKey: String
        let keysStatement: String
        let keysSignature: String
        let contributorsSignature: String
    }
    let round: UInt64
    let session: String
    let members: [Member]
    let digest: String
    let contributors: [UInt32]
    let contributorsStatement: String
    let clients: [Client]

    static let shared: ConsistencyVector = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Protocol/vectors/secagg_consistency.json")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try! decoder.decode(ConsistencyVector.self, from: Data(contentsOf: url))
    }()

    var names: [UInt32: String] { Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0.name) }) }
}

@Suite("The consistency check's vector (secagg_consistency.json) and its checks")
struct ConsistencyVectorTests {
    private let v = ConsistencyVector.shared

    private func trusted() throws -> TrustedIdentities {
        try TrustedIdentities(
            Dictionary(uniqueKeysWithValues: v.clients.map { (v.names[$0.id]!, bytes($0.publicKey)) }))
    }

    @Test("The cohort digest and the statements are the generator's, byte for byte; its signatures verify")
    func digestStatementsAndSignatures() throws {
        let cohort = try CohortBinding(round: v.round, session: bytes(v.session), members: v.names)
        #expect(cohort.digest == bytes(v.digest))
        #expect(cohort.contributorsStatement(v.contributors) == bytes(v.contributorsStatement))
        let keys = try trusted()
        for c in v.clients {
            let name = v.names[c.id]!
            // The private key of the vector gives its public key.
            let identity = SigningIdentity(
                name: name, privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: bytes(c.privateKey)))
            #expect(Array(identity.publicKey.rawRepresentation) == bytes(c.publicKey))
            let statement = cohort.keysStatement(
                name: name, encryption: bytes(c.encryptionKey), masking: bytes(c.maskingKey))
            #expect(statement == bytes(c.keysStatement))
            #expect(keys.isValid(bytes(c.keysSignature), of: statement, by: name))
            #expect(keys.isValid(bytes(c.contributorsSignature), of: bytes(v.contributorsStatement), by: name))
            // A signature of this implementation verifies too.
            #expect(keys.isValid(try identity.sign(statement), of: statement, by: name))
            try ConsistencyCheck.verifyKeys(
                cohort, id: c.id, encryption: bytes(c.encryptionKey), masking: bytes(c.maskingKey),
                signature: bytes(c.keysSignature), trusted: keys)
        }
    }

    @Test("The checks refuse another cohort, 2t <= n, another member's signature, another U3 and fewer than t")
    func checksRefuse() throws {
        let cohort = try CohortBinding(round: v.round, session: bytes(v.session), members: v.names)
        let keys = try trusted()
        try ConsistencyCheck.verifyCohort(
            cohort, digest: bytes(v.digest), name: "client-2", participant: 2, threshold: 2, trusted: keys)
        // Another session: another digest.
        var session = bytes(v.session)
        session[0] ^= 1
        let other = try CohortBinding(round: v.round, session: session, members: v.names)
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyCohort(
                other, digest: bytes(v.digest), name: "client-2", participant: 2, threshold: 2, trusted: keys)
        }
        // The wrong name at the participant's id, and t = 1 of 3 (2t <= n).
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyCohort(
                cohort, digest: bytes(v.digest), name: "client-1", participant: 2, threshold: 2, trusted: keys)
        }
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyCohort(
                cohort, digest: bytes(v.digest), name: "client-2", participant: 2, threshold: 1, trusted: keys)
        }
        // Client 1's keys with client 3's signature.
        let c1 = v.clients[0]
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyKeys(
                cohort, id: 1, encryption: bytes(c1.encryptionKey), masking: bytes(c1.maskingKey),
                signature: bytes(v.clients[2].keysSignature), trusted: keys)
        }
        let signed = v.clients.map { (signer: $0.id, signature: bytes($0.contributorsSignature)) }
        #expect(
            try ConsistencyCheck.verifyContributors(
                cohort, contributors: v.contributors, signatures: signed, threshold: 3, trusted: keys) == 3)
        // The same signatures do not verify on another U3; two are fewer than t = 3; a signer twice is refused.
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyContributors(
                cohort, contributors: [1, 2], signatures: Array(signed.prefix(2)), threshold: 2, trusted: keys)
        }
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyContributors(
                cohort, contributors: v.contributors, signatures: Array(signed.prefix(2)), threshold: 3,
                trusted: keys)
        }
        #expect(throws: SecureAggregationError.self) {
            try ConsistencyCheck.verifyContributors(
                cohort, contributors: v.contributors, signatures: [signed[0], signed[0]], threshold: 1,
                trusted: keys)
        }
    }

    @Test("Identity files round-trip; a malformed line, a name twice and a foreign key are refused")
    func identityFiles() throws {
        let a = SigningIdentity.generate(name: "a")
        let back = try SigningIdentity(file: a.fileText)
        #expect(back.name == "a" && back.publicKey.rawRepresentation == a.publicKey.rawRepresentation)
        let trusted = TrustedIdentities([a, SigningIdentity.generate(name: "b")])
        #expect(try TrustedIdentities(file: "# keys\n\n" + trusted.fileText) == trusted)
        #expect(throws: IdentityFileError.self) { try TrustedIdentities(file: "a 00\n") }
        #expect(throws: IdentityFileError.self) { try TrustedIdentities(file: trusted.fileText + trusted.fileText) }
        #expect(throws: IdentityFileError.self) { try SigningIdentity(file: trusted.fileText) }
    }
}
