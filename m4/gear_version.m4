# gear_version.m4 - the package version, read from include/gear.h  -*- Autoconf -*-
#
# m4_include'd by configure.ac before AC_INIT (not through aclocal), so that
# the version has one source of truth: GEAR_VERSION_MAJOR/MINOR/PATCH in
# include/gear.h.  Makefile.am lists include/gear.h in CONFIGURE_DEPENDENCIES.
m4_define([gear_version],
  m4_esyscmd_s([awk '/^#define GEAR_VERSION_(MAJOR|MINOR|PATCH)[ \t]/ { v = v s $3; s = "." } END { printf "%s", v }' include/gear.h]))
m4_if(m4_bregexp(gear_version, [^[0-9]+\.[0-9]+\.[0-9]+$]), [-1],
  [m4_fatal([could not read GEAR_VERSION_MAJOR/MINOR/PATCH from include/gear.h (got ']gear_version[')])])
