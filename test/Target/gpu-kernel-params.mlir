// RUN: lq-opt %s --split-input-file --pass-pipeline='builtin.module(gpu.module(lq-gpu-kernel-params))' --verify-diagnostics | FileCheck %s

// The tensor maps a TMA kernel lists become 128-byte parameters aligned to
// 64 bytes and read in place (grid constants); the marker goes away.
// CHECK-LABEL: llvm.func @tma
// CHECK-SAME: %{{.*}}: !llvm.ptr<1>,
// CHECK-SAME: %{{.*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant},
// CHECK-SAME: %{{.*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant})
// CHECK-NOT: lq.tensor_map_args
// CHECK-SAME: nvvm.kernel
module attributes {gpu.container_module} {
  gpu.module @k {
    llvm.func @tma(%a: !llvm.ptr<1>, %ma: !llvm.ptr, %mb: !llvm.ptr)
        attributes {nvvm.kernel, lq.tensor_map_args = array<i32: 1, 2>} {
      llvm.return
    }
  }
}

// -----

module attributes {gpu.container_module} {
  gpu.module @k {
    // expected-error @below {{'lq.tensor_map_args' lists argument 2, but @f has 2}}
    llvm.func @f(%a: !llvm.ptr<1>, %m: !llvm.ptr)
        attributes {nvvm.kernel, lq.tensor_map_args = array<i32: 2>} {
      llvm.return
    }
  }
}

// -----

module attributes {gpu.container_module} {
  gpu.module @k {
    // expected-error @below {{tensor map argument 0 must be a generic !llvm.ptr, not '!llvm.ptr<1>'}}
    llvm.func @f(%a: !llvm.ptr<1>)
        attributes {nvvm.kernel, lq.tensor_map_args = array<i32: 0>} {
      llvm.return
    }
  }
}

// -----

module attributes {gpu.container_module} {
  gpu.module @k {
    // expected-error @below {{'lq.tensor_map_args' on a function that is not a kernel}}
    llvm.func @f(%m: !llvm.ptr) attributes {lq.tensor_map_args = array<i32: 0>} {
      llvm.return
    }
  }
}

// -----

module attributes {gpu.container_module} {
  gpu.module @k {
    // expected-error @below {{'lq.tensor_map_args' must be a dense i32 array, not 1 : i32}}
    llvm.func @f(%m: !llvm.ptr) attributes {nvvm.kernel, lq.tensor_map_args = 1 : i32} {
      llvm.return
    }
  }
}
