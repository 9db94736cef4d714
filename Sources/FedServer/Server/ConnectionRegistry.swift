import NIOCore
import Synchronization

/// The server's open connections: admission against the limits, and the
/// list of channels a shutdown closes.
///
/// Admission: up to `limit` connections are served, and at most
/// `perAddressLimit` from one IP address when that is set. Past a limit, up
/// to `refusalSlots` more connections are held just long enough to tell the
/// client (`overloaded` or `503`, once its protocol is known) and closed;
/// past that, a connection is closed on arrival.
final class ConnectionRegistry: Sendable {
    enum Admission: Equatable { case served, refused(reason: String), dropped }

    let limit: Int
    let perAddressLimit: Int?
    let refusalSlots: Int

    private struct State {
        var served: [ObjectIdentifier: (channel: Channel, address: String)] = [:]
        var perAddress: [String: Int] = [:]
        var refusing = 0
    }
    private let state = Mutex(State())

    init(limit: Int, perAddressLimit: Int?, refusalSlots: Int = 64) {
        self.limit = limit
        self.perAddressLimit = perAddressLimit
        self.refusalSlots = refusalSlots
    }

    /// Connections being served now.
    var count: Int { state.withLock { $0.served.count } }

    /// Decides what happens to a new connection and, for `.served` and
    /// `.refused`, releases its place when the channel closes.
    func admit(_ channel: Channel) -> Admission {
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let id = ObjectIdentifier(channel)
        let admission = state.withLock { s -> Admission in
            let fromAddress = s.perAddress[address, default: 0]
            var reason: String?
            if s.served.count >= limit {
                reason = "\(limit) connections already open"
            } else if let per = perAddressLimit, fromAddress >= per {
                reason = "\(per) connections already open from \(address)"
            }
            if let reason {
                guard s.refusing < refusalSlots else { return .dropped }
                s.refusing += 1
                return .refused(reason: reason)
            }
            s.served[id] = (channel, address)
            s.perAddress[address] = fromAddress + 1
            return .served
        }
        switch admission {
        case .served:
            channel.closeFuture.whenComplete { _ in
                self.state.withLock { s in
                    s.served[id] = nil
                    let left = s.perAddress[address, default: 1] - 1
                    s.perAddress[address] = left > 0 ? left : nil
                }
            }
        case .refused:
            channel.closeFuture.whenComplete { _ in self.state.withLock { $0.refusing -= 1 } }
        case .dropped:
            break
        }
        return admission
    }

    /// Every connection being served now.
    func channels() -> [Channel] { state.withLock { $0.served.values.map(\.channel) } }
}
