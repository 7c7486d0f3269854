/* cmd_backends.c - `gear backends`: what can compute here, and why not. */
#include "cli.h"
#include "json.h"

void usage_backends(FILE *f)
{
    fprintf(f, "Usage: gear backends [--json]\n\n"
               "List every backend libgear knows (built in or found as a module): whether it\n"
               "can run on this machine and, if not, why; its priority score (\"auto\" picks\n"
               "the highest available one) and where it was loaded from.\n\n"
               "Under each backend that is available, what it says of itself (for cpu: the\n"
               "kernels it chose on this CPU).\n\n"
               "  --json    one JSON object per backend: name, available, reason, score,\n"
               "            origin, auto (true for the one \"auto\" selects), description\n");
}

int cmd_backends(int argc, char **argv)
{
    int json = 0;
    const cli_opt opts[] = {{"--json", OPT_FLAG, &json, 0, 0, NULL}};
    int rc = cli_parse(argv[0], argc, argv, opts, 1, usage_backends);
    if (rc) return rc;

    /* Which one "auto" picks: the highest score among the available. */
    int n = gear_backend_count(), pick = -1;
    for (int i = 0; i < n; i++)
        if (gear_backend_available(i, NULL) &&
            (pick < 0 || gear_backend_score(i) > gear_backend_score(pick)))
            pick = i;
    if (!json) printf("%-8s %-9s %5s  %-4s  %s\n", "backend", "available", "score", "auto",
                      "origin / reason");
    for (int i = 0; i < n; i++) {
        const char *why = NULL, *name = gear_backend_name(i), *origin = gear_backend_origin(i);
        int ok = gear_backend_available(i, &why);
        if (json) {
            json_out j;
            jo_begin(&j, stdout);
            jo_str(&j, "name", name);
            jo_bool(&j, "available", ok);
            jo_str(&j, "reason", ok ? NULL : why ? why : "unknown");
            jo_int(&j, "score", gear_backend_score(i));
            jo_str(&j, "origin", origin);
            jo_bool(&j, "auto", i == pick);
            jo_str(&j, "description", gear_backend_description(i));
            jo_end(&j);
        } else {
            printf("%-8s %-9s %5d  %-4s  %s%s%s\n", name ? name : "?", ok ? "yes" : "no",
                   gear_backend_score(i), i == pick ? "*" : "", origin ? origin : "?",
                   ok ? "" : ": ", ok ? "" : why ? why : "unknown reason");
            const char *desc = gear_backend_description(i);
            if (ok && desc) printf("%-8s %s\n", "", desc);
        }
    }
    if (!n) cli_error(argv[0], "no backends found (libgear should always have 'ref')");
    return n ? CLI_OK : CLI_FAIL;
}
