import FedCodec
extension Fed.Bench { struct Codec: ParsableCommand { func run() {} } }
import ArgumentParser
