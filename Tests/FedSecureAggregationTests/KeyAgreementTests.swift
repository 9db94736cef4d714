import Crypto
import FedSecureAggregation
import Foundation
import Testing

/// Two participants and a round.
struct PairCase: Sendable, CustomTestStringConvertible {
    let i: UInt32
    let j: UInt32
    let round: UInt64
    var testDescription: String { "\(i) and \(j), round \(round)" }
}

@Suite("Key agreement and share encryption")
struct KeyAgreementTests {
    static let pairs = [
        PairCase(i: 1, j: 2, round: 0), PairCase(i: 7, j: 3, round: 1), PairCase(i: 100, j: 99, round: 1 << 40),
    ]

    @Test(
        "Both sides derive the same mask seed and share key; other rounds, pairs and purposes differ", arguments: pairs)
    func bothSidesAgree(_ pair: PairCase) throws {
        let a = ParticipantKeys()
        let b = ParticipantKeys()
        let seedAB = try PairwiseKeys.maskSeed(
            privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: pair.round, between: pair.i,
            and: pair.j)
        let seedBA = try PairwiseKeys.maskSeed(
            privateKey: b.maskingKey, peerPublicKey: a.publicKeys.masking, round: pair.round, between: pair.j,
            and: pair.i)
        #expect(seedAB == seedBA)
        let keyAB = try PairwiseKeys.shareKey(
            privateKey: a.encryptionKey, peerPublicKey: b.publicKeys.encryption, round: pair.round,
            between: pair.i, and: pair.j)
        let keyBA = try PairwiseKeys.shareKey(
            privateKey: b.encryptionKey, peerPublicKey: a.publicKeys.encryption, round: pair.round,
            between: pair.j, and: pair.i)
        #expect(keyAB == keyBA)

        let otherRound = try PairwiseKeys.maskSeed(
            privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: pair.round + 1,
            between: pair.i, and: pair.j)
        let otherPair = try PairwiseKeys.maskSeed(
            privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: pair.round,
            between: pair.i, and: pair.j + 1000)
        // The same agreement for the other purpose: the share key must not be the mask seed.
        let otherPurpose = try PairwiseKeys.shareKey(
            privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: pair.round,
            between: pair.i, and: pair.j)
        #expect(Set([seedAB, otherRound, otherPair]).count == 3)
        #expect(otherPurpose.withUnsafeBytes { [UInt8]($0) } != seedAB.bytes)
    }

    @Test("A participant cannot pair with itself or use id 0; a low-order public key is refused")
    func refusals() throws {
        let a = ParticipantKeys()
        let b = ParticipantKeys()
        #expect(throws: SecureAggregationError.invalidParticipant(3)) {
            try PairwiseKeys.maskSeed(
                privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: 0, between: 3, and: 3)
        }
        #expect(throws: SecureAggregationError.invalidParticipant(0)) {
            try PairwiseKeys.maskSeed(
                privateKey: a.maskingKey, peerPublicKey: b.publicKeys.masking, round: 0, between: 0, and: 3)
        }
        // The point of order 1 (u = 0) and u = 1 give an all-zero shared secret.
        for u: UInt8 in [0, 1] {
            let lowOrder = [u] + [UInt8](repeating: 0, count: 31)
            #expect(throws: SecureAggregationError.invalidPublicKey) {
                try PairwiseKeys.maskSeed(
                    privateKey: a.maskingKey, peerPublicKey: lowOrder, round: 0, between: 1, and: 2)
            }
        }
        #expect(throws: SecureAggregationError.wrongKeyLength(expected: 32, got: 31)) {
            try ParticipantPublicKeys(encryption: [UInt8](repeating: 9, count: 31), masking: b.publicKeys.masking)
        }
    }

    /// Participant 1 sends participant 2 its shares; participant 3 is a bystander.
    struct Exchange {
        let keys = (1...3).map { _ in ParticipantKeys() }
        let round: UInt64 = 42

        func key(_ i: UInt32, _ j: UInt32) throws -> SymmetricKey {
            try PairwiseKeys.shareKey(
                privateKey: keys[Int(i) - 1].encryptionKey, peerPublicKey: keys[Int(j) - 1].publicKeys.encryption,
                round: round, between: i, and: j)
        }

        func bundle() throws -> ShareBundle {
            let sender = keys[0]
            let keyShares = try SecretShare.split(
                [UInt8](sender.maskingKey.rawRepresentation), threshold: 2, at: [2, 3])
            let seedShares = try SecretShare.split(MaskSeed.random().bytes, threshold: 2, at: [2, 3])
            return try ShareBundle(maskingKeyShare: keyShares[0], selfMaskSeedShare: seedShares[0])
        }
    }

    @Test("A bundle sealed from 1 to 2 opens with 2's key, and with no one else's")
    func opensOnlyForTheRecipient() throws {
        let exchange = Exchange()
        let bundle = try exchange.bundle()
        let sealed = try ShareEncryption.seal(bundle, key: exchange.key(1, 2), round: exchange.round, sender: 1)
        #expect(sealed.count == 12 + bundle.encoded.count + 16)
        let opened = try ShareEncryption.open(
            sealed, key: exchange.key(2, 1), round: exchange.round, sender: 1, recipient: 2)
        #expect(opened == bundle)
        // Participant 3's keys with participant 1 (it sees the ciphertext through the server).
        #expect(throws: SecureAggregationError.authenticationFailed) {
            try ShareEncryption.open(sealed, key: exchange.key(3, 1), round: exchange.round, sender: 1, recipient: 2)
        }
        #expect(throws: SecureAggregationError.authenticationFailed) {
            try ShareEncryption.open(sealed, key: exchange.key(3, 1), round: exchange.round, sender: 1, recipient: 3)
        }
        // The right key, but claimed for another round, sender or recipient.
        for (round, sender, recipient): (UInt64, UInt32, UInt32) in [(43, 1, 2), (42, 2, 1), (42, 3, 2), (42, 1, 3)] {
            #expect(throws: SecureAggregationError.authenticationFailed) {
                try ShareEncryption.open(
                    sealed, key: exchange.key(2, 1), round: round, sender: sender, recipient: recipient)
            }
        }
    }

    @Test(
        "Any flipped bit of the ciphertext (nonce, body, tag) is detected",
        arguments: [0, 5, 11, 12, 40, 80, 119, 123, 135])
    func tamperingDetected(byte: Int) throws {
        let exchange = Exchange()
        var sealed = try ShareEncryption.seal(
            exchange.bundle(), key: exchange.key(1, 2), round: exchange.round, sender: 1)
        #expect(byte < sealed.count)
        sealed[byte] ^= 0x10
        #expect(throws: SecureAggregationError.authenticationFailed) {
            try ShareEncryption.open(sealed, key: exchange.key(2, 1), round: exchange.round, sender: 1, recipient: 2)
        }
        #expect(throws: SecureAggregationError.authenticationFailed) {
            try ShareEncryption.open(
                Array(sealed.prefix(20)), key: exchange.key(2, 1), round: exchange.round, sender: 1, recipient: 2)
        }
    }

    @Test("Shares addressed to another holder are refused even under a valid seal")
    func misaddressedShares() throws {
        let exchange = Exchange()
        let bundle = try exchange.bundle()  // shares at x = 2
        #expect(throws: SecureAggregationError.invalidParticipant(2)) {
            try ShareEncryption.seal(bundle, key: exchange.key(2, 1), round: exchange.round, sender: 2)
        }
        let keyShares = try SecretShare.split([UInt8](repeating: 1, count: 32), threshold: 1, at: [2, 3])
        #expect(throws: SecureAggregationError.malformedBundle("the two shares are for different x-coordinates")) {
            try ShareBundle(maskingKeyShare: keyShares[0], selfMaskSeedShare: keyShares[1])
        }
    }

    @Test("A masking key shared among neighbours is rebuilt from t of their decrypted bundles", arguments: [2, 3, 5])
    func maskingKeyRebuilt(threshold: Int) throws {
        let holders = (2...UInt32(threshold + 2))  // participant 1 shares with threshold + 1 neighbours
        let sender = ParticipantKeys()
        let neighbours = Dictionary(uniqueKeysWithValues: holders.map { ($0, ParticipantKeys()) })
        let keyShares = try SecretShare.split(
            [UInt8](sender.maskingKey.rawRepresentation), threshold: threshold, at: Array(holders))
        let seedShares = try SecretShare.split(MaskSeed.random().bytes, threshold: threshold, at: Array(holders))
        var received: [SecretShare] = []
        for (index, holder) in holders.enumerated() {
            let bundle = try ShareBundle(maskingKeyShare: keyShares[index], selfMaskSeedShare: seedShares[index])
            let sealed = try ShareEncryption.seal(
                bundle,
                key: PairwiseKeys.shareKey(
                    privateKey: sender.encryptionKey, peerPublicKey: neighbours[holder]!.publicKeys.encryption,
                    round: 9, between: 1, and: holder), round: 9, sender: 1)
            let opened = try ShareEncryption.open(
                sealed,
                key: PairwiseKeys.shareKey(
                    privateKey: neighbours[holder]!.encryptionKey, peerPublicKey: sender.publicKeys.encryption,
                    round: 9, between: holder, and: 1), round: 9, sender: 1, recipient: holder)
            received.append(opened.maskingKeyShare)
        }
        let rebuilt = try Curve25519.KeyAgreement.PrivateKey(
            rawRepresentation: SecretShare.recover(Array(received.suffix(threshold)), threshold: threshold))
        #expect(rebuilt.rawRepresentation == sender.maskingKey.rawRepresentation)
    }
}
