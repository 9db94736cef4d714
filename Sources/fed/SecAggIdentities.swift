import ArgumentParser
import FedClient
import FedSecureAggregation
import FedSecureClient
import Foundation

extension Fed {
    /// `fed secagg-identities`: signing identities for secure aggregation's consistency check.
    struct SecAggIdentities: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "secagg-identities",
            abstract: "Make Ed25519 signing identities for secure aggregation's consistency check.",
            discussion:
                "Writes DIR/NAME.key (the private key of client NAME: give it to that client only, fed client --id NAME --secagg-identity DIR/NAME.key) and DIR/trusted.txt (every client's public key: give it to the server, fed server --secagg consistency=on --secagg-identities DIR/trusted.txt, and to every client, fed client --secagg-trusted DIR/trusted.txt). Each line of both is NAME and 64 hex digits. An existing trusted.txt is extended, never rewritten."
        )

        @Option(help: ArgumentHelp("The folder to write the files to.", valueName: "DIR")) var out: String
        @Argument(help: ArgumentHelp("The clients' ids.", valueName: "NAME")) var names: [String]

        func run() throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let trustedPath = out + "/trusted.txt"
            var keys = (try? TrustedIdentities(file: String(contentsOfFile: trustedPath, encoding: .utf8)))?.keys ?? [:]
            for name in names {
                guard !name.isEmpty, !name.contains(" "), !name.contains("/"), keys[name] == nil else {
                    throw ValidationError("\(name): give a new client id without spaces or slashes")
                }
                let identity = SigningIdentity.generate(name: name)
                let path = out + "/\(name).key"
                guard
                    FileManager.default.createFile(
                        atPath: path, contents: Data(identity.fileText.utf8), attributes: [.posixPermissions: 0o600])
                else { throw ValidationError("\(path) could not be written") }
                keys[name] = Array(identity.publicKey.rawRepresentation)
            }
            try TrustedIdentities(keys).fileText.write(toFile: trustedPath, atomically: true, encoding: .utf8)
            print("\(names.count) identities written to \(out); \(keys.count) trusted keys in \(trustedPath)")
        }
    }
}

extension Fed.Client {
    /// The factory of this client's secure-train participants: with an
    /// identity (--secagg-identity, --secagg-trusted), only rounds with the
    /// consistency check are taken part in.
    func secureFactory(clientID: String) throws -> SecureParticipantFactory? {
        guard secagg else { return nil }
        guard let secaggIdentity, let secaggTrusted else { return SecAggParticipant.factory }
        do {
            let identity = try SigningIdentity(file: String(contentsOfFile: secaggIdentity, encoding: .utf8))
            guard identity.name == clientID else {
                throw ValidationError(
                    "--secagg-identity \(secaggIdentity) is the identity of \(identity.name), not of this client (\(clientID))"
                )
            }
            let trusted = try TrustedIdentities(file: String(contentsOfFile: secaggTrusted, encoding: .utf8))
            return SecAggParticipant.factory(identity: try SecAggIdentity(identity: identity, trusted: trusted))
        } catch let error as IdentityFileError {
            throw ValidationError("secure aggregation identity: \(error)")
        }
    }
}
