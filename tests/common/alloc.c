/* The victim of the container and kernel-matrix tests: allocates 1 MiB
 * blocks and touches every page, at most 1 GiB, but only after it has read
 * a memory limit of at most 256 MiB on its own cgroup (v1 or v2): without
 * one it allocates nothing. Built static (`gcc -static`) so that it runs in
 * an image or initramfs that has no libc.
 *
 * Its cgroup is found from /proc/self/cgroup first (a guest without cgroup
 * namespaces, where /sys/fs/cgroup is the root's), then at the fixed paths a
 * container sees (its own cgroup mounted at /sys/fs/cgroup). The root
 * cgroup's huge v1 limit is refused like no limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (!f) return -2; /* no such file: look elsewhere */
    if (fscanf(f, "%lld", &v) != 1) v = -1; /* "max": no limit */
    fclose(f);
    return v;
}

/* The limit of the cgroup named in /proc/self/cgroup, or -2 if no such
 * file exists under /sys/fs/cgroup. */
static long long own_cgroup_limit(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096], path[4200];
    long long found = -2;
    if (!f) return -2;
    while (found == -2 && fgets(line, sizeof line, f)) {
        char *controllers = strchr(line, ':');
        char *cgroup = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!cgroup) continue;
        *cgroup++ = '\0';
        controllers++;
        cgroup[strcspn(cgroup, "\n")] = '\0';
        if (strcmp(cgroup, "/") == 0) cgroup = "";
        if (line[0] == '0' && controllers[0] == '\0') {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", cgroup);
        } else if (strstr(controllers, "memory")) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cgroup);
        } else {
            continue;
        }
        found = read_limit(path);
    }
    fclose(f);
    return found;
}

static long long limit(void) {
    const char *files[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    long long v = own_cgroup_limit();
    for (int i = 0; v == -2 && i < 2; i++) v = read_limit(files[i]);
    return v;
}

int main(void) {
    long long l = limit();
    if (l <= 0 || l > 256LL << 20) {
        fprintf(stderr, "no memory limit of at most 256 MiB (%lld): not allocating\n", l);
        return 2;
    }
    for (int i = 0; i < 1024; i++) {
        char *p = malloc(1 << 20);
        if (!p) return 3;
        memset(p, 1, 1 << 20);
    }
    fprintf(stderr, "allocated 1 GiB without being OOM-killed\n");
    return 4;
}
