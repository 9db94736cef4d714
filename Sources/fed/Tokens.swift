import ArgumentParser
import Foundation

/// Auth tokens from the places other than the command line (where `ps`
/// shows them to every user of the machine): a file with one token a line
/// (blank lines and lines starting with # ignored), and an environment variable.
enum Tokens {
    /// The tokens in `path`; a clear error if the file cannot be read or holds none.
    static func file(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read the token file \(path)")
        }
        let tokens = lines(text)
        guard !tokens.isEmpty else { throw ValidationError("the token file \(path) holds no token") }
        return tokens
    }

    /// The tokens in environment variable `name` (separated by newlines or commas).
    static func environment(_ name: String) -> [String] {
        lines(ProcessInfo.processInfo.environment[name]?.replacingOccurrences(of: ",", with: "\n") ?? "")
    }

    private static func lines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }
}
