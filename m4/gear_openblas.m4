# gear_openblas.m4 - OpenBLAS detection for libgear's cpu module  -*- Autoconf -*-

# GEAR_CHECK_OPENBLAS
# -------------------
# --with-openblas=auto|yes|no (default auto).  Tries pkg-config openblas,
# then cblas_sgemm in -lopenblas; either way cblas.h must compile and link.
# Sets have_openblas=yes|no, OPENBLAS_CFLAGS, OPENBLAS_LIBS (substituted)
# and gear_openblas_why (a line for the configure summary).  Nothing in
# libgear itself links OpenBLAS: only backend modules may.
AC_DEFUN([GEAR_CHECK_OPENBLAS],
[AC_REQUIRE([PKG_PROG_PKG_CONFIG])dnl
AC_ARG_WITH([openblas],
  [AS_HELP_STRING([--with-openblas@<:@=auto|yes|no@:>@],
    [use OpenBLAS in the cpu backend module (default: auto)])],
  [], [with_openblas=auto])
AS_CASE([$with_openblas], [auto|yes|no], [],
  [AC_MSG_ERROR([--with-openblas takes auto, yes or no, not '$with_openblas' (set OPENBLAS_CFLAGS and OPENBLAS_LIBS for a custom location)])])

have_openblas=no
gear_openblas_why="disabled"
AS_IF([test "x$with_openblas" != xno],
  [gear_openblas_how=
   PKG_CHECK_MODULES([OPENBLAS], [openblas], [gear_openblas_how=pkg-config],
     [AC_MSG_NOTICE([openblas.pc not found; looking for cblas_sgemm in -lopenblas])
      gear_save_LIBS=$LIBS
      LIBS=
      AC_SEARCH_LIBS([cblas_sgemm], [openblas],
        [gear_openblas_how=library
         OPENBLAS_CFLAGS=
         OPENBLAS_LIBS=$LIBS])
      LIBS=$gear_save_LIBS])
   AS_IF([test "x$gear_openblas_how" != x],
     [AC_MSG_CHECKING([whether cblas.h compiles and links with OpenBLAS])
      gear_save_CPPFLAGS=$CPPFLAGS
      gear_save_LIBS=$LIBS
      CPPFLAGS="$CPPFLAGS $OPENBLAS_CFLAGS"
      LIBS="$OPENBLAS_LIBS $LIBS"
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cblas.h>]],
          [[float a = 1.0f, b = 2.0f, c = 0.0f;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1,
                        1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
            return c == 2.0f ? 0 : 1;]])],
        [have_openblas=yes], [have_openblas=no])
      CPPFLAGS=$gear_save_CPPFLAGS
      LIBS=$gear_save_LIBS
      AC_MSG_RESULT([$have_openblas])
      gear_openblas_why="found by $gear_openblas_how (or OPENBLAS_CFLAGS/OPENBLAS_LIBS), but cblas.h does not compile and link; see config.log"],
     [gear_openblas_why="not found; Debian: apt-get install libopenblas-dev"])
   AS_IF([test "x$have_openblas" != xyes && test "x$with_openblas" = xyes],
     [AC_MSG_ERROR([--with-openblas=yes but OpenBLAS cannot be used: $gear_openblas_why])])])
AS_IF([test "x$have_openblas" != xyes], [OPENBLAS_CFLAGS= ; OPENBLAS_LIBS=])
AC_SUBST([OPENBLAS_CFLAGS])
AC_SUBST([OPENBLAS_LIBS])
])
