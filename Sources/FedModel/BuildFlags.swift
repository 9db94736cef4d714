/// How FedModel was compiled.
public enum FedModelBuild {
    /// True when Package.swift compiled FedModel for a CPU with FMA (FED_FMA defined:
    /// fused multiply-add in the kernels); false for the portable baseline.
    public static var fusedMultiplyAdd: Bool {
        #if FED_FMA
            true
        #else
            false
        #endif
    }
}
