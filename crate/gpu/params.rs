//! The Rust side of a kernel's `Params` uniform block: its field layout, recorded where the struct
//! is declared (by [`crate::params_struct!`]) so that `tests/reflect.rs` can compare it with the
//! layout naga computes for the WGSL `struct Params` (member names, offsets, sizes, scalar types).

/// One field of a `#[repr(C)]` parameter block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsField {
    pub name: &'static str,
    /// Byte offset (`std::mem::offset_of!`).
    pub offset: usize,
    /// Bytes (`std::mem::size_of` of the field's type).
    pub size: usize,
    /// The field's Rust type as written (`u32`, `f32`, `[u32; 3]`, …).
    pub ty: &'static str,
}

/// The layout of a `#[repr(C)]` parameter block. Fields whose name starts with `_` are padding:
/// the WGSL struct may leave them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsLayout {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [ParamsField],
}

/// Declare a kernel's parameter block: the struct (made `#[repr(C)]`; give it `Pod` and
/// `Zeroable`), a `LAYOUT: ParamsLayout` constant built with `offset_of!`/`size_of`, and a
/// compile-time check that it fits one slot of the recorder's parameter arena.
#[macro_export]
macro_rules! params_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($fvis $field: $ty),*
        }
        impl $name {
            /// The Rust layout of this block (checked against the WGSL by `tests/reflect.rs`).
            pub const LAYOUT: $crate::gpu::ParamsLayout = $crate::gpu::ParamsLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::ParamsField {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    size: std::mem::size_of::<$ty>(),
                    ty: stringify!($ty),
                }),*],
            };
        }
        const _: () = assert!(
            std::mem::size_of::<$name>() as u64 <= $crate::gpu::MAX_PARAM_BYTES
        );
    };
}
