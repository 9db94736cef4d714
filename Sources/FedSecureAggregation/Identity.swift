import Crypto
import Foundation

/// A client's long-term signing identity for secure aggregation's
/// consistency check: its name (the client id it checks in with) and its
/// Ed25519 private key (`Curve25519.Signing`).
///
/// File form (``init(file:)``): one line `NAME HEX`, HEX the 64 hex digits of
/// the key's 32 raw bytes; blank lines and lines starting with `#` are skipped.
public struct SigningIdentity: Sendable {
    public let name: String
    public let privateKey: Curve25519.Signing.PrivateKey

    public init(name: String, privateKey: Curve25519.Signing.PrivateKey) {
        self.name = name
        self.privateKey = privateKey
    }

    /// A fresh identity (`fed secagg-identities`, tests).
    public static func generate(name: String) -> SigningIdentity {
        SigningIdentity(name: name, privateKey: Curve25519.Signing.PrivateKey())
    }

    public var publicKey: Curve25519.Signing.PublicKey { privateKey.publicKey }

    /// The identity a file holds.
    ///
    /// - Throws: ``IdentityFileError`` naming the line that is wrong.
    public init(file text: String) throws {
        let entries = try IdentityFile.entries(text)
        guard entries.count == 1, let (name, key) = entries.first else {
            throw IdentityFileError("an identity file holds exactly one line NAME HEX (found \(entries.count))")
        }
        do {
            self.init(name: name, privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: key))
        } catch {
            throw IdentityFileError("\(name): not an Ed25519 private key")
        }
    }

    /// The file form of this identity.
    public var fileText: String { "\(name) \(IdentityFile.hex(Array(privateKey.rawRepresentation)))\n" }

    /// This identity's signature of `statement`.
    public func sign(_ statement: [UInt8]) throws -> [UInt8] {
        Array(try privateKey.signature(for: statement))
    }
}

/// The public keys clients' names are trusted under: the public-key
/// infrastructure Bonawitz et al. assume, given to the server and to every
/// client out of band (`fed server --secagg-identities FILE`, `fed client
/// --secagg-trusted FILE`).
///
/// File form: one line `NAME HEX` per client, HEX the 64 hex digits of its
/// Ed25519 public key; names unique; `#` comments and blank lines skipped.
public struct TrustedIdentities: Sendable, Equatable {
    public let keys: [String: [UInt8]]

    /// - Throws: ``IdentityFileError`` for a key that is not an Ed25519 public key.
    public init(_ keys: [String: [UInt8]]) throws {
        for (name, key) in keys where (try? Curve25519.Signing.PublicKey(rawRepresentation: key)) == nil {
            throw IdentityFileError("\(name): not an Ed25519 public key")
        }
        self.keys = keys
    }

    public init(file text: String) throws {
        var keys: [String: [UInt8]] = [:]
        for (name, key) in try IdentityFile.entries(text) {
            guard keys.updateValue(key, forKey: name) == nil else { throw IdentityFileError("\(name) listed twice") }
        }
        try self.init(keys)
    }

    public init(_ identities: [SigningIdentity]) {
        self.keys = Dictionary(
            uniqueKeysWithValues: identities.map { ($0.name, Array($0.publicKey.rawRepresentation)) })
    }

    /// The file form: one line per name, names sorted.
    public var fileText: String { keys.keys.sorted().map { "\($0) \(IdentityFile.hex(keys[$0]!))\n" }.joined() }

    public func contains(_ name: String) -> Bool { keys[name] != nil }

    /// Whether `signature` is `name`'s signature of `statement` (false for a name not trusted).
    public func isValid(_ signature: [UInt8], of statement: [UInt8], by name: String) -> Bool {
        guard let raw = keys[name], let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            return false
        }
        return key.isValidSignature(signature, for: statement)
    }
}

/// Why an identity file was refused.
public struct IdentityFileError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The `NAME HEX` lines of identity files.
enum IdentityFile {
    static func entries(_ text: String) throws -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let key = bytes(hex: parts[1]), key.count == 32,
                (1...256).contains(parts[0].utf8.count)
            else {
                throw IdentityFileError("line \(number + 1): give NAME and 64 hex digits")
            }
            out.append((String(parts[0]), key))
        }
        return out
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func bytes(hex: Substring) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }
}
