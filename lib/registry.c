/*
 * registry.c - the backend registry and module loader (DESIGN s5).
 *
 * ref is built in.  Modules gear-<name>.so are searched, in order, in the
 * directory "gear" next to libgear itself, the configured GEAR_MODULE_DIR,
 * and every directory of GEAR_BACKEND_PATH (colon-separated) - never the
 * current directory.  The first module of a name wins; every skip is logged
 * at INFO with its reason.  Loading happens once, on first use.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#ifndef GEAR_MODULE_DIR
#define GEAR_MODULE_DIR ""
#endif
#define MAX_BACKENDS 16

typedef struct entry {
    const struct gear_backend_i *be;
    char origin[PATH_MAX];
    int score;
    const char *why;
} entry;

static entry entries[MAX_BACKENDS];
static int n_entries;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int have_name(const char *name)
{
    for (int i = 0; i < n_entries; i++)
        if (!strcmp(entries[i].be->name, name)) return 1;
    return 0;
}

static void add(const struct gear_backend_i *be, const char *origin)
{
    entry *e = &entries[n_entries++];
    e->be = be;
    snprintf(e->origin, sizeof e->origin, "%s", origin);
    e->why = "";
    e->score = be->score(&e->why);
    if (!e->why) e->why = "";
}

/* A module must fill every required slot. */
static int table_complete(const struct gear_backend_i *be)
{
    return be->name && be->score && be->init && be->shutdown && be->mem_alloc && be->mem_free &&
           be->mem_copy && be->sync && be->outlier_select && be->quantize && be->dequantize &&
           be->lowrank_fit && be->reconstruct;
}

static void try_module(const char *path)
{
    if (n_entries >= MAX_BACKENDS) {
        gear_log(GEAR_LOG_INFO, "skipping %s: too many backends", path);
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        gear_log(GEAR_LOG_INFO, "skipping module %s: %s", path, dlerror());
        return;
    }
    gear_backend_module_init_fn init;
    *(void **)&init = dlsym(h, GEAR_BACKEND_MODULE_SYMBOL);
    const struct gear_backend_i *be = init ? init(GEAR_BACKEND_ABI_VERSION) : NULL;
    const char *why = !init ? "no " GEAR_BACKEND_MODULE_SYMBOL " symbol"
                      : !be ? "module refused ABI version"
                      : be->abi_version != GEAR_BACKEND_ABI_VERSION ? "ABI version mismatch"
                      : !table_complete(be) ? "incomplete backend table"
                      : have_name(be->name) ? "a backend of that name is already loaded"
                      : NULL;
    if (why) {
        gear_log(GEAR_LOG_INFO, "skipping module %s: %s", path, why);
        dlclose(h);
        return;
    }
    add(be, path); /* kept open for the life of the process */
    gear_log(GEAR_LOG_INFO, "loaded backend %s from %s", be->name, path);
}

static void scan_dir(const char *dir)
{
    if (!dir || !*dir) return;
    DIR *dp = opendir(dir);
    if (!dp) {
        gear_log(GEAR_LOG_DEBUG, "module dir %s not readable", dir);
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && n < 64) {
        size_t len = strlen(de->d_name);
        if (len > 8 && !strncmp(de->d_name, "gear-", 5) && !strcmp(de->d_name + len - 3, ".so"))
            if ((names[n] = strdup(de->d_name))) n++;
    }
    closedir(dp);
    /* sorted, so the load order does not depend on the file system */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) < (int)sizeof path)
            try_module(path);
        free(names[i]);
    }
}

static void load_all(void)
{
    add(gear_backend_ref_table(), "built-in");
    Dl_info info;
    if (dladdr((void *)&gear_context_create, &info) && info.dli_fname) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            if (strlen(dir) + 6 < sizeof dir) {
                strcat(dir, "/gear");
                scan_dir(dir);
            }
        }
    }
    scan_dir(GEAR_MODULE_DIR);
    const char *env = getenv("GEAR_BACKEND_PATH");
    if (env) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save))
            scan_dir(d);
        free(copy);
    }
}

int gear_registry_count(void)
{
    pthread_once(&once, load_all);
    return n_entries;
}

const struct gear_backend_i *gear_registry_get(int i)
{
    return i >= 0 && i < gear_registry_count() ? entries[i].be : NULL;
}

gear_status gear_registry_find(const char *name, const struct gear_backend_i **be)
{
    int n = gear_registry_count(), best = -1;
    if (!name || !*name || !strcmp(name, "auto")) {
        for (int i = 0; i < n; i++)
            if (entries[i].score > 0 && (best < 0 || entries[i].score > entries[best].score))
                best = i;
        if (best < 0) return gear_fail(GEAR_ERR_NO_BACKEND, "no usable backend");
        *be = entries[best].be;
        return GEAR_OK;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(entries[i].be->name, name)) continue;
        if (entries[i].score <= 0)
            return gear_fail(GEAR_ERR_NO_BACKEND, "backend '%s' is not usable here: %s", name,
                             entries[i].why);
        *be = entries[i].be;
        return GEAR_OK;
    }
    return gear_fail(GEAR_ERR_NO_BACKEND, "backend '%s' not found (see `gear backends`; modules "
                     "are searched next to libgear, in %s and in GEAR_BACKEND_PATH)", name,
                     *GEAR_MODULE_DIR ? GEAR_MODULE_DIR : "(no module dir)");
}

int gear_backend_count(void) { return gear_registry_count(); }

const char *gear_backend_name(int i)
{
    const struct gear_backend_i *be = gear_registry_get(i);
    return be ? be->name : NULL;
}

int gear_backend_available(int i, const char **why)
{
    if (i < 0 || i >= gear_registry_count()) {
        if (why) *why = "no such backend index";
        return 0;
    }
    if (why) *why = entries[i].why;
    return entries[i].score > 0;
}

int gear_backend_score(int i)
{
    return i >= 0 && i < gear_registry_count() ? entries[i].score : 0;
}

const char *gear_backend_origin(int i)
{
    return i >= 0 && i < gear_registry_count() ? entries[i].origin : NULL;
}

const char *gear_backend_description(int i)
{
    if (i < 0 || i >= gear_registry_count()) return NULL;
    return entries[i].be->description ? entries[i].be->description : "";
}
