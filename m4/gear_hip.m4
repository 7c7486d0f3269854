# gear_hip.m4 - HIP (ROCm) detection for libgear's hip module  -*- Autoconf -*-

# GEAR_CHECK_HIP
# --------------
# Options:
#   --enable-hip=auto|yes|no   (default auto; --with-rocm=DIR implies yes)
#   --with-rocm=DIR            ROCm root (default: from hipcc in PATH, then
#                              /opt/rocm)
#   --with-hip-arch=LIST       offload architectures (default
#                              "gfx90a gfx942 gfx1100"; commas or spaces)
# Precious: HIPCC, HIPCCFLAGS.
#
# Detection really compiles a kernel with `hipcc -x hip --offload-arch=A'
# for every architecture (an explicit list must be fully supported; from the
# default list unsupported entries are dropped) and links a C host program
# against libamdhip64.
#
# Sets have_hip=yes|no, gear_hip_why, gear_hip_arch and substitutes HIPCC,
# HIP_ARCH_FLAGS, ROCM_DIR, HIP_CPPFLAGS, HIP_LDFLAGS, HIP_LIBS.  Nothing in
# libgear itself uses them.
AC_DEFUN([GEAR_CHECK_HIP],
[AC_REQUIRE([AC_PROG_CC])dnl
AC_ARG_ENABLE([hip],
  [AS_HELP_STRING([--enable-hip@<:@=auto|yes|no@:>@],
    [detect HIP/ROCm for the hip backend module (default: auto)])],
  [], [enable_hip=auto])
AC_ARG_WITH([rocm],
  [AS_HELP_STRING([--with-rocm=DIR],
    [ROCm root (default: from hipcc in PATH, then /opt/rocm)])],
  [], [with_rocm=])
AC_ARG_WITH([hip-arch],
  [AS_HELP_STRING([--with-hip-arch=LIST],
    [HIP offload architectures (default: "gfx90a gfx942 gfx1100")])],
  [gear_hip_arch_explicit=yes],
  [gear_hip_arch_explicit=no; with_hip_arch="gfx90a gfx942 gfx1100"])
AC_ARG_VAR([HIPCC], [HIP compiler command])
AC_ARG_VAR([HIPCCFLAGS], [extra flags for HIPCC])

AS_CASE([$enable_hip], [auto|yes|no], [],
  [AC_MSG_ERROR([--enable-hip takes auto, yes or no, not '$enable_hip'])])
AS_CASE([$with_rocm],
  [no], [enable_hip=no; with_rocm=],
  [yes], [with_rocm=; AS_IF([test "x$enable_hip" = xauto], [enable_hip=yes])],
  [""], [],
  [AS_IF([test "x$enable_hip" = xauto], [enable_hip=yes])])

have_hip=no
gear_hip_why="disabled"
gear_hip_arch=
HIP_ARCH_FLAGS=
ROCM_DIR=
HIP_CPPFLAGS=
HIP_LDFLAGS=
HIP_LIBS=

AS_IF([test "x$enable_hip" != xno], [
  gear_hip_why=
  # --- hipcc
  AS_IF([test "x$HIPCC" = x],
    [AS_IF([test "x$with_rocm" != x],
       [AC_PATH_PROG([HIPCC], [hipcc], [], [$with_rocm/bin])],
       [AC_PATH_PROG([HIPCC], [hipcc], [], [$PATH$PATH_SEPARATOR/opt/rocm/bin])])])
  AS_IF([test "x$HIPCC" = x],
    [gear_hip_why="hipcc not found${with_rocm:+ in $with_rocm/bin}"])

  # --- ROCm root
  AS_IF([test "x$gear_hip_why" = x], [
    AS_IF([test "x$with_rocm" != x], [ROCM_DIR=$with_rocm],
      [gear_hipcc_path=`command -v "$HIPCC" 2>/dev/null`
       gear_hipcc_real=`readlink -f "$gear_hipcc_path" 2>/dev/null || echo "$gear_hipcc_path"`
       ROCM_DIR=`AS_DIRNAME(["$gear_hipcc_real"])`
       ROCM_DIR=`AS_DIRNAME(["$ROCM_DIR"])`
       # /opt/rocm-X/lib/llvm/bin/... style layouts: climb to the ROCm root
       AS_IF([test ! -d "$ROCM_DIR/include/hip" && test -d /opt/rocm/include/hip], [ROCM_DIR=/opt/rocm])])
    AC_MSG_NOTICE([HIP: using $HIPCC (ROCm root $ROCM_DIR)])])

  # --- kernels compile for each architecture
  AS_IF([test "x$gear_hip_why" = x], [
    cat > conftest.hip <<_GEAR_EOF
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
__global__ void gear_probe(float *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? __half2float(__float2half_rn(x@<:@i@:>@)) : 0.0f;
    v += __shfl_xor(v, 1, warpSize);
    if (i < n) x@<:@i@:>@ = __int2float_rn(__float2int_rn(v));
}
int main(void)
{
    hipLaunchKernelGGL(gear_probe, dim3(1), dim3(64), 0, 0, (float *)0, 0);
    return hipGetLastError() == hipSuccess ? 0 : 1;
}
_GEAR_EOF
    gear_hip_bad=
    for gear_a in `echo "$with_hip_arch" | tr ',' ' '`; do
      AS_CASE([$gear_a],
        [gfx@<:@0-9@:>@*], [],
        [AC_MSG_ERROR([--with-hip-arch: '$gear_a' is not an AMD GPU architecture such as gfx90a])])
      AC_MSG_CHECKING([whether $HIPCC compiles for $gear_a])
      AS_IF([AC_RUN_LOG([$HIPCC $HIPCCFLAGS -x hip --offload-arch=$gear_a -c conftest.hip -o conftest.$OBJEXT])],
        [AC_MSG_RESULT([yes])
         gear_hip_arch="${gear_hip_arch:+$gear_hip_arch }$gear_a"
         HIP_ARCH_FLAGS="${HIP_ARCH_FLAGS:+$HIP_ARCH_FLAGS }--offload-arch=$gear_a"],
        [AC_MSG_RESULT([no])
         gear_hip_bad="${gear_hip_bad:+$gear_hip_bad }$gear_a"])
    done
    rm -f conftest.hip conftest.$OBJEXT
    AS_IF([test "x$gear_hip_arch" = x],
      [gear_hip_why="$HIPCC compiles for none of: $with_hip_arch; see config.log"],
      [test "x$gear_hip_bad" != x && test "x$gear_hip_arch_explicit" = xyes],
      [gear_hip_why="$HIPCC cannot compile for $gear_hip_bad; see config.log"],
      [test "x$gear_hip_bad" != x],
      [AC_MSG_WARN([$HIPCC cannot compile for $gear_hip_bad: building for $gear_hip_arch only])])])

  # --- a C host program links the HIP runtime
  AS_IF([test "x$gear_hip_why" = x], [
    HIP_CPPFLAGS="-D__HIP_PLATFORM_AMD__"
    AS_IF([test "x$ROCM_DIR" != x/usr], [HIP_CPPFLAGS="$HIP_CPPFLAGS -I$ROCM_DIR/include"])
    gear_hip_libdir=
    for gear_d in "$ROCM_DIR/lib" "$ROCM_DIR/lib64"; do
      AS_IF([test -f "$gear_d/libamdhip64.so"], [gear_hip_libdir=$gear_d; break])
    done
    gear_save_CPPFLAGS=$CPPFLAGS
    gear_save_LDFLAGS=$LDFLAGS
    gear_save_LIBS=$LIBS
    CPPFLAGS="$CPPFLAGS $HIP_CPPFLAGS"
    AS_IF([test "x$gear_hip_libdir" != x], [LDFLAGS="$LDFLAGS -L$gear_hip_libdir"])
    LIBS="-lamdhip64 $LIBS"
    AC_MSG_CHECKING([for the HIP runtime library])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <hip/hip_runtime_api.h>]],
        [[int n = 0; return hipGetDeviceCount(&n) == hipSuccess ? 0 : 1;]])],
      [HIP_LIBS=-lamdhip64])
    CPPFLAGS=$gear_save_CPPFLAGS
    LDFLAGS=$gear_save_LDFLAGS
    LIBS=$gear_save_LIBS
    AC_MSG_RESULT([${HIP_LIBS:-not found}])
    AS_IF([test "x$HIP_LIBS" = x],
      [gear_hip_why="hip/hip_runtime_api.h or libamdhip64 not usable${gear_hip_libdir:+ in $gear_hip_libdir}; see config.log"],
      [AS_IF([test "x$gear_hip_libdir" != x && test "x$gear_hip_libdir" != x/usr/lib],
         [HIP_LDFLAGS="-L$gear_hip_libdir -R$gear_hip_libdir"])])])

  AS_IF([test "x$gear_hip_why" = x], [have_hip=yes],
    [test "x$enable_hip" = xyes],
    [AC_MSG_ERROR([HIP was requested but cannot be used: $gear_hip_why])],
    [AC_MSG_NOTICE([HIP not used: $gear_hip_why])])
])
AS_IF([test "x$have_hip" != xyes],
  [HIP_ARCH_FLAGS= ; HIP_CPPFLAGS= ; HIP_LDFLAGS= ; HIP_LIBS=])
AC_SUBST([HIP_ARCH_FLAGS])
AC_SUBST([ROCM_DIR])
AC_SUBST([HIP_CPPFLAGS])
AC_SUBST([HIP_LDFLAGS])
AC_SUBST([HIP_LIBS])
])
