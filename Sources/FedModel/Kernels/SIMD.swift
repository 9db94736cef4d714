/// The vector type of every kernel: 16 floats (one AVX-512 register, two AVX2 ones).
public typealias Vec = SIMD16<Float>

/// `acc + a * b`, fused where the build allows it.
///
/// Release builds of Swift target baseline x86-64 unless told otherwise, and
/// there `addingProduct` is a library call per lane (slower by far). So
/// the fused form is used only when the package is built for a CPU with FMA,
/// which defines `FED_FMA` (Package.swift does so for the root package on a
/// machine with FMA, or as FED_TARGET_CPU says; see the README); otherwise a
/// separate multiply and add.
@inline(__always)
func fmadd(_ acc: Vec, _ a: Vec, _ b: Vec) -> Vec {
    #if FED_FMA
        return acc.addingProduct(a, b)
    #else
        return acc + a * b
    #endif
}

@inline(__always)
func load(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

@inline(__always)
func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}
