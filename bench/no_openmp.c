/*
 * no_openmp.c - bench/gear-bench in a build without OpenMP: the bench and
 * its fp16 baseline are OpenMP programs, so this one only says so.
 */
#include <stdio.h>

int main(void)
{
    fputs("gear-bench: this build has no OpenMP (configure found none); the bench needs it\n", stderr);
    return 1;
}
