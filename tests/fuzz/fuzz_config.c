/*
 * fuzz_config.c: the configuration loader (core/config.c): DPDK's
 * rte_cfgfile reading the INI file, then our key table's validation, then
 * -o overrides.
 *
 * Input: the file, then optionally a NUL and overrides, one "key=value" per
 * line (what pigeond's -o takes).  config_load() reads a path, so the file
 * goes into a memfd named by /proc/self/fd.  What must hold besides "no
 * crash": a refusal says why; a configuration that loads needs no restart
 * against itself, and every domain it lists is served.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static struct pa_config config;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd = memfd_create("pa-fuzz-config", 0);

	(void)argc;
	(void)argv;
	CHECK(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* "domains is empty" and similar warnings on every run would drown libFuzzer's output. */
	pa_log_set_level(PA_LOG_ERR);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_override ov[CONFIG_OVERRIDES_MAX];
	const uint8_t *nul = memchr(data, '\0', size);
	size_t file_len = nul != NULL ? (size_t)(nul - data) : size, nov = 0;
	char err[CONFIG_ERR_MAX] = "";
	char *overrides = NULL, *line, *save;
	int fd = atoi(path + strlen("/proc/self/fd/"));

	CHECK(ftruncate(fd, 0) == 0);
	CHECK(pwrite(fd, data, file_len, 0) == (ssize_t)file_len);
	if (nul != NULL) {
		overrides = strndup((const char *)nul + 1, size - file_len - 1);
		CHECK(overrides != NULL);
		for (line = strtok_r(overrides, "\n", &save);
		     line != NULL && nov < pa_array_size(ov); line = strtok_r(NULL, "\n", &save))
			if (config_parse_override(line, &ov[nov]) == PA_OK)
				nov++;
	}
	if (config_load(&config, path, ov, nov, err, sizeof(err)) == PA_OK) {
		CHECK(config_restart_needed(&config, &config) == NULL);
		for (size_t i = 0; i < config.ndomains; i++)
			CHECK(config_domain_served(&config, config.domains[i]));
		config_free(&config);
	} else {
		CHECK(err[0] != '\0');
	}
	free(overrides);
	return 0;
}
