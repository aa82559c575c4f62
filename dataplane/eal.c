/*
 * eal.c: builds EAL's argument vector from the configuration and starts EAL.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_debug.h>
#include <rte_errno.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/eal.h"

#define EAL_ARGS_MAX 64

/* The CPUs pigeond was allowed (taskset, cpuset) before EAL pinned the main thread. */
static cpu_set_t process_cpus;
static bool process_cpus_known;

static unsigned
listen_port(const struct pa_config *config)
{
	if (config->listen_addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&config->listen_addr)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&config->listen_addr)->sin_port);
}

/*
 * Whether a live process answers on the telemetry socket of file prefix
 * `prefix`, found where EAL puts runtime directories (eal_create_runtime_dir():
 * /var/run for root, else $XDG_RUNTIME_DIR, else /tmp).
 */
static bool
telemetry_in_use(const char *prefix)
{
	const char *base = getuid() == 0 ? "/var/run" : getenv("XDG_RUNTIME_DIR");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	bool live;
	int fd;

	if (base == NULL)
		base = "/tmp";
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/dpdk/%s/dpdk_telemetry.v2",
	                     base, prefix) >= sizeof(sun.sun_path))
		return false;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return false;
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return live;
}

void
eal_start(const struct pa_config *config, const char *argv0)
{
	static char lcores[64], prefix[64], extra[sizeof(config->dpdk_eal)];
	char *argv[EAL_ARGS_MAX];
	int argc = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char *save = NULL;

	if (ncpu < 1)
		ncpu = 1;
	/*
	 * Workers float over every CPU rather than being pinned: with the kernel
	 * backend they sleep in epoll, and on a small shared machine pinning
	 * more lcores than CPUs would stack them on one core.
	 */
	snprintf(lcores, sizeof(lcores), "--lcores=(0-%u)@(0-%ld)", config->workers, ncpu - 1);
	/*
	 * One prefix per listening port keeps instances on different ports apart
	 * and gives operators a predictable telemetry socket:
	 * /var/run/dpdk/pigeond-PORT/dpdk_telemetry.v2 (pigeond-PORT-PID when
	 * another pigeond on that port holds it; `pigeonctl status` names it).
	 */
	snprintf(prefix, sizeof(prefix), "--file-prefix=pigeond-%u", listen_port(config));
	/*
	 * Another pigeond on the same port (another address) already answers
	 * there: sharing its directory, the first to stop would remove the
	 * other's telemetry socket with its own (eal_stop()).
	 */
	if (config->backend != PA_BACKEND_DPDK &&
	    telemetry_in_use(prefix + strlen("--file-prefix=")))
		snprintf(prefix, sizeof(prefix), "--file-prefix=pigeond-%u-%d", listen_port(config),
		         (int)getpid());
	argv[argc++] = (char *)argv0;
	if (config->backend == PA_BACKEND_DPDK) {
		/*
		 * The DPDK backend takes devices, memory and hugepage use from
		 * dpdk.eal (a NIC, or --no-huge --vdev=net_tap0,...): nothing is
		 * forced but the lcores and, unless dpdk.eal names its own
		 * --file-prefix or --in-memory, a per-process prefix with no
		 * shared config, so instances in different network namespaces
		 * never meet in /var/run/dpdk.
		 */
		bool own_prefix = strstr(config->dpdk_eal, "--file-prefix") != NULL;
		bool in_memory = strstr(config->dpdk_eal, "--in-memory") != NULL;

		if (strstr(config->dpdk_eal, "--lcores") == NULL &&
		    strstr(config->dpdk_eal, "-l ") == NULL)
			argv[argc++] = lcores;
		if (!own_prefix) {
			snprintf(prefix, sizeof(prefix), "--file-prefix=pigeond-dpdk-%d",
			         (int)getpid());
			argv[argc++] = prefix;
			if (!in_memory)
				argv[argc++] = "--no-shconf";
		}
	} else {
		argv[argc++] = lcores;
		argv[argc++] = prefix;
		argv[argc++] = "--no-huge";
		argv[argc++] = "--no-pci";
		/* --in-memory refuses --no-huge; no shared config keeps instances apart instead. */
		argv[argc++] = "--no-shconf";
		argv[argc++] = "-m";
		argv[argc++] = "256";
	}
	argv[argc++] = "--log-level=lib.eal:warning";
	snprintf(extra, sizeof(extra), "%s", config->dpdk_eal);
	for (char *tok = strtok_r(extra, " \t", &save); tok && argc < EAL_ARGS_MAX - 1;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;

	if (sched_getaffinity(0, sizeof(process_cpus), &process_cpus) == -1)
		pa_log_warning("sched_getaffinity() failed: %s: spool committers stay on the main "
		               "lcore's CPUs",
		               strerror(errno));
	else
		process_cpus_known = true;
	if (rte_eal_init(argc, argv) < 0)
		rte_exit(EXIT_FAILURE, "rte_eal_init() failed: %s\n", rte_strerror(rte_errno));
	if (rte_lcore_count() != config->workers + 1)
		rte_exit(EXIT_FAILURE, "EAL gave %u lcores, %u workers need %u\n",
		         rte_lcore_count(), config->workers, config->workers + 1);
}

bool
eal_spare_cpu_for_committers(void)
{
	cpu_set_t own;

	if (sched_getaffinity(0, sizeof(own), &own) == -1)
		return false;
	return (unsigned)CPU_COUNT(&own) > rte_lcore_count() - 1;
}

/* "0,2-3" for the log line. */
static void
format_cpus(const cpu_set_t *set, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (unsigned cpu = 0; cpu < CPU_SETSIZE && n < len; cpu++) {
		unsigned last = cpu;

		if (!CPU_ISSET(cpu, set))
			continue;
		while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set))
			last++;
		if (last == cpu)
			n += (size_t)snprintf(out + n, len - n, "%s%u", n ? "," : "", cpu);
		else
			n += (size_t)snprintf(out + n, len - n, "%s%u-%u", n ? "," : "", cpu, last);
		cpu = last;
	}
}

int
eal_committer_cpus(const struct pa_config *config, cpu_set_t *set)
{
	char list[256];
	unsigned lcore;

	if (config->spool_committer_cpus[0] != '\0') {
		/* Validated when the configuration was loaded. */
		if (config_parse_cpu_list(config->spool_committer_cpus, set) != PA_OK)
			return PA_ERROR;
		pa_log_info("spool committers on CPUs %s (spool.committer_cpus)",
		            config->spool_committer_cpus);
		return PA_OK;
	}
	/* Kernel-backend workers sleep in epoll: sharing their CPUs costs them nothing. */
	if (config->backend != PA_BACKEND_DPDK || !process_cpus_known)
		return PA_AGAIN;
	*set = process_cpus;
	RTE_LCORE_FOREACH_WORKER(lcore)
	{
		rte_cpuset_t busy = rte_lcore_cpuset(lcore);

		for (unsigned cpu = 0; cpu < CPU_SETSIZE; cpu++)
			if (CPU_ISSET(cpu, &busy))
				CPU_CLR(cpu, set);
	}
	if (CPU_COUNT(set) == 0) {
		pa_log_info("spool committers share the workers' CPUs: every CPU is a worker "
		            "lcore's (give EAL -l or --lcores to set CPUs apart)");
		return PA_AGAIN;
	}
	format_cpus(set, list, sizeof(list));
	pa_log_info("spool committers on CPUs %s, away from the worker lcores", list);
	return PA_OK;
}

void
eal_stop(void)
{
	char dir[512];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	/* Our runtime directory only holds the telemetry sockets: leave nothing behind. */
	d = opendir(dir);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[1024];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}
