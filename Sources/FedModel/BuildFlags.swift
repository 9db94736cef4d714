/// How FedModel was compiled.
public enum FedModelBuild {
    /// True when built with FED_TARGET_CPU (fused multiply-add in the kernels).
    public static var fusedMultiplyAdd: Bool {
        #if FED_FMA
            true
        #else
            false
        #endif
    }
}
