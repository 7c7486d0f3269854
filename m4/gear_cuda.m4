# gear_cuda.m4 - CUDA toolkit detection for libgear's cuda module  -*- Autoconf -*-

# GEAR_CHECK_CUDA
# ---------------
# Options:
#   --enable-cuda=auto|yes|no   (default auto; --with-cuda=DIR implies yes)
#   --with-cuda=DIR             toolkit root (default: from nvcc in PATH, then
#                               /usr/local/cuda)
#   --with-cuda-arch=LIST       architectures, e.g. "sm_80 sm_90" (default) or
#                               "80,90"; machine code for each, plus PTX for
#                               the newest so that later GPUs JIT it
# Precious: NVCC, NVCCFLAGS.
#
# Detection really compiles a kernel with nvcc for every architecture (an
# explicit list must be fully supported; from the default list unsupported
# entries are dropped) and links a host program against the CUDA runtime
# (libcudart_static preferred, then libcudart; never libcuda from stubs/).
#
# Sets have_cuda=yes|no, gear_cuda_why, gear_cuda_version, gear_cuda_arch
# and substitutes NVCC, NVCC_ARCH_FLAGS, CUDA_DIR, CUDA_CPPFLAGS,
# CUDA_LDFLAGS, CUDART_LIBS.  Nothing in libgear itself uses them.
AC_DEFUN([GEAR_CHECK_CUDA],
[AC_REQUIRE([AC_PROG_CC])dnl
AC_ARG_ENABLE([cuda],
  [AS_HELP_STRING([--enable-cuda@<:@=auto|yes|no@:>@],
    [detect CUDA for the cuda backend module (default: auto)])],
  [], [enable_cuda=auto])
AC_ARG_WITH([cuda],
  [AS_HELP_STRING([--with-cuda=DIR],
    [CUDA toolkit root (default: from nvcc in PATH, then /usr/local/cuda)])],
  [], [with_cuda=])
AC_ARG_WITH([cuda-arch],
  [AS_HELP_STRING([--with-cuda-arch=LIST],
    [CUDA architectures (default: "sm_80 sm_90")])],
  [gear_cuda_arch_explicit=yes],
  [gear_cuda_arch_explicit=no; with_cuda_arch="sm_80 sm_90"])
AC_ARG_VAR([NVCC], [CUDA compiler command])
AC_ARG_VAR([NVCCFLAGS], [extra flags for NVCC])

AS_CASE([$enable_cuda], [auto|yes|no], [],
  [AC_MSG_ERROR([--enable-cuda takes auto, yes or no, not '$enable_cuda'])])
# --with-cuda=no disables, --with-cuda=DIR (or yes) asks for CUDA.
AS_CASE([$with_cuda],
  [no], [enable_cuda=no; with_cuda=],
  [yes], [with_cuda=; AS_IF([test "x$enable_cuda" = xauto], [enable_cuda=yes])],
  [""], [],
  [AS_IF([test "x$enable_cuda" = xauto], [enable_cuda=yes])])

have_cuda=no
gear_cuda_why="disabled"
gear_cuda_version=
gear_cuda_arch=
NVCC_ARCH_FLAGS=
CUDA_DIR=
CUDA_CPPFLAGS=
CUDA_LDFLAGS=
CUDART_LIBS=

AS_IF([test "x$enable_cuda" != xno], [
  gear_cuda_why=
  # --- nvcc
  AS_IF([test "x$NVCC" = x],
    [AS_IF([test "x$with_cuda" != x],
       [AC_PATH_PROG([NVCC], [nvcc], [], [$with_cuda/bin])],
       [AC_PATH_PROG([NVCC], [nvcc], [], [$PATH$PATH_SEPARATOR/usr/local/cuda/bin])])])
  AS_IF([test "x$NVCC" = x],
    [gear_cuda_why="nvcc not found${with_cuda:+ in $with_cuda/bin}"])

  # --- toolkit root and version
  AS_IF([test "x$gear_cuda_why" = x], [
    AS_IF([test "x$with_cuda" != x], [CUDA_DIR=$with_cuda],
      [gear_nvcc_path=`command -v "$NVCC" 2>/dev/null`
       gear_nvcc_real=`readlink -f "$gear_nvcc_path" 2>/dev/null || echo "$gear_nvcc_path"`
       CUDA_DIR=`AS_DIRNAME(["$gear_nvcc_real"])`
       CUDA_DIR=`AS_DIRNAME(["$CUDA_DIR"])`])
    AC_MSG_CHECKING([CUDA version])
    gear_cuda_version=`$NVCC --version 2>/dev/null | sed -n 's/.*release \(@<:@0-9.@:>@*\),.*/\1/p'`
    AC_MSG_RESULT([${gear_cuda_version:-unknown} (in $CUDA_DIR)])])

  # --- kernels compile for each architecture
  AS_IF([test "x$gear_cuda_why" = x], [
    cat > conftest.cu <<_GEAR_EOF
#include <cuda_runtime.h>
#include <cuda_fp16.h>
__global__ void gear_probe(float *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? __half2float(__float2half_rn(x@<:@i@:>@)) : 0.0f;
    v += __shfl_xor_sync(0xffffffffu, v, 1, warpSize);
    if (i < n) x@<:@i@:>@ = __int2float_rn(__float2int_rn(v));
}
int main(void)
{
    gear_probe<<<1, 64>>>(0, 0);
    return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
_GEAR_EOF
    gear_cuda_bad=
    gear_cuda_last=
    for gear_a in `echo "$with_cuda_arch" | tr ',' ' '`; do
      gear_n=`echo "$gear_a" | sed 's/^sm_//; s/^compute_//'`
      AS_CASE([$gear_n],
        [@<:@1-9@:>@@<:@0-9@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@0-9@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@af@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@0-9@:>@@<:@af@:>@], [],
        [AC_MSG_ERROR([--with-cuda-arch: '$gear_a' is not a CUDA architecture such as sm_80])])
      AC_MSG_CHECKING([whether $NVCC compiles for sm_$gear_n])
      AS_IF([AC_RUN_LOG([$NVCC $NVCCFLAGS -gencode arch=compute_$gear_n,code=sm_$gear_n -c conftest.cu -o conftest.$OBJEXT])],
        [AC_MSG_RESULT([yes])
         gear_cuda_arch="${gear_cuda_arch:+$gear_cuda_arch }sm_$gear_n"
         NVCC_ARCH_FLAGS="${NVCC_ARCH_FLAGS:+$NVCC_ARCH_FLAGS }-gencode arch=compute_$gear_n,code=sm_$gear_n"
         gear_cuda_last=$gear_n],
        [AC_MSG_RESULT([no])
         gear_cuda_bad="${gear_cuda_bad:+$gear_cuda_bad }sm_$gear_n"])
    done
    rm -f conftest.cu conftest.$OBJEXT
    AS_IF([test "x$gear_cuda_arch" = x],
      [gear_cuda_why="$NVCC compiles for none of: $with_cuda_arch; see config.log"],
      [test "x$gear_cuda_bad" != x && test "x$gear_cuda_arch_explicit" = xyes],
      [gear_cuda_why="$NVCC cannot compile for $gear_cuda_bad; see config.log"],
      [test "x$gear_cuda_bad" != x],
      [AC_MSG_WARN([$NVCC cannot compile for $gear_cuda_bad: building for $gear_cuda_arch only])])
    # PTX of the newest architecture, for GPUs newer than the list
    AS_IF([test "x$gear_cuda_last" != x],
      [NVCC_ARCH_FLAGS="$NVCC_ARCH_FLAGS -gencode arch=compute_$gear_cuda_last,code=compute_$gear_cuda_last"])])

  # --- host program links the CUDA runtime
  AS_IF([test "x$gear_cuda_why" = x], [
    AS_IF([test "x$CUDA_DIR" != x/usr], [CUDA_CPPFLAGS="-I$CUDA_DIR/include"])
    gear_cuda_libdir=
    for gear_d in "$CUDA_DIR/lib64" "$CUDA_DIR/lib" "$CUDA_DIR"/targets/*/lib; do
      AS_IF([test -f "$gear_d/libcudart_static.a" || test -f "$gear_d/libcudart.so"],
        [gear_cuda_libdir=$gear_d; break])
    done
    gear_save_CPPFLAGS=$CPPFLAGS
    gear_save_LDFLAGS=$LDFLAGS
    gear_save_LIBS=$LIBS
    CPPFLAGS="$CPPFLAGS $CUDA_CPPFLAGS"
    AS_IF([test "x$gear_cuda_libdir" != x], [LDFLAGS="$LDFLAGS -L$gear_cuda_libdir"])
    AC_MSG_CHECKING([for the CUDA runtime library])
    for gear_l in "-lcudart_static -ldl -lrt -lpthread" "-lcudart"; do
      LIBS="$gear_l $gear_save_LIBS"
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime_api.h>]],
          [[int n = 0; return cudaGetDeviceCount(&n) == cudaSuccess ? 0 : 1;]])],
        [CUDART_LIBS=$gear_l; break])
    done
    CPPFLAGS=$gear_save_CPPFLAGS
    LDFLAGS=$gear_save_LDFLAGS
    LIBS=$gear_save_LIBS
    AC_MSG_RESULT([${CUDART_LIBS:-not found}])
    AS_IF([test "x$CUDART_LIBS" = x],
      [gear_cuda_why="cuda_runtime_api.h or libcudart not usable${gear_cuda_libdir:+ in $gear_cuda_libdir}; see config.log"],
      [AS_IF([test "x$gear_cuda_libdir" != x],
         [CUDA_LDFLAGS="-L$gear_cuda_libdir"
          # a shared runtime must be found at run time: record its directory
          AS_IF([test "x$CUDART_LIBS" = x-lcudart],
            [CUDA_LDFLAGS="$CUDA_LDFLAGS -R$gear_cuda_libdir"])])])])

  AS_IF([test "x$gear_cuda_why" = x], [have_cuda=yes],
    [test "x$enable_cuda" = xyes],
    [AC_MSG_ERROR([CUDA was requested but cannot be used: $gear_cuda_why])],
    [AC_MSG_NOTICE([CUDA not used: $gear_cuda_why])])
])
AS_IF([test "x$have_cuda" != xyes],
  [NVCC_ARCH_FLAGS= ; CUDA_CPPFLAGS= ; CUDA_LDFLAGS= ; CUDART_LIBS=])
AC_SUBST([NVCC_ARCH_FLAGS])
AC_SUBST([CUDA_DIR])
AC_SUBST([CUDA_CPPFLAGS])
AC_SUBST([CUDA_LDFLAGS])
AC_SUBST([CUDART_LIBS])
])
