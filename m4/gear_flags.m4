# gear_flags.m4 - compiler flag probes for libgear            -*- Autoconf -*-

# GEAR_CHECK_CFLAG(FLAG, [ACTION-IF-ACCEPTED], [ACTION-IF-NOT-ACCEPTED])
# ----------------------------------------------------------------------
# Whether the C compiler accepts FLAG: a compile that prints anything on
# stderr counts as a rejection, so that compilers which only warn about an
# unknown option (clang: "unknown warning option") do not get it.
AC_DEFUN([GEAR_CHECK_CFLAG],
[AC_REQUIRE([AC_PROG_CC])dnl
AS_VAR_PUSHDEF([gear_cv], [gear_cv_cflag_$1])dnl
AC_CACHE_CHECK([whether $CC accepts $1], [gear_cv],
  [gear_save_CFLAGS=$CFLAGS
   gear_save_werror=$ac_c_werror_flag
   ac_c_werror_flag=yes
   CFLAGS="$CFLAGS $1"
   AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[static int gear_probe(int x) { return x + 1; }]],
                                      [[return gear_probe(0) - 1;]])],
     [AS_VAR_SET([gear_cv], [yes])], [AS_VAR_SET([gear_cv], [no])])
   CFLAGS=$gear_save_CFLAGS
   ac_c_werror_flag=$gear_save_werror])
AS_VAR_IF([gear_cv], [yes], [$2], [$3])
AS_VAR_POPDEF([gear_cv])dnl
])
