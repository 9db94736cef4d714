/// Why a simulation could not run: a configuration value out of range, or a
/// partition file that does not fit the data.
public struct SimulationError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, naming the value.
    public var description: String

    /// An error that says `description`.
    public init(_ description: String) { self.description = description }
}
