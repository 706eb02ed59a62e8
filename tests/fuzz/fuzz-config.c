/*
 * fuzz-config.c: the libFuzzer target of the configuration loader:
 * gh_config_load (daemon/config/config.c) over the key-file reader
 * (common/keyfile.c), which gatehoused -t, a reload and gatehousectl run on
 * whatever an admin (or a configuration tool) wrote.
 *
 * Input: the file's text; "@DIR@" in it becomes a directory that holds the
 * files test-config.c names (cert.pem, key.pem, cert2.pem, key2.pem,
 * ca.pem, master.secret, ldap.secret, users), so that valid files load.  The text is written to a
 * file in that directory, as the loader reads a path.  Texts naming "/dev", "/proc", "/sys" or ".."
 * are skipped: the loader opens the files a configuration names (to check
 * that they are readable), and a fuzzer must not open devices.
 *
 * Asserted: gh_key_file_load_from_data on the text agrees with the loader
 * (a text it refuses is refused with its very lines as problems); of a text
 * that loads, every key's line is found (gh_key_file_line) and
 * gh_key_file_peek gives GKeyFile's own raw value (gatehousectl finds the
 * control socket this way).  A refused configuration has problems, each
 * "PATH:LINE: ..." or "PATH: ..." with LINE a line of the file, valid UTF-8
 * (they go to the journal and into JSON), in the order of their lines.  A
 * loaded one has listeners whose auth groups and backend exist and speak
 * the listener's protocol, certificates for TLS listeners, trusted PROXY
 * networks where PROXY headers are expected, backends with servers, and
 * workers.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "common/keyfile.h"
#include "config/config.h"

#include <string.h>

static char *dir;
static char *path;
/* the files test-config.c names, all readable */
static const char *const files[] = {"cert.pem", "key.pem",       "cert2.pem",   "key2.pem",
				    "ca.pem",   "master.secret", "ldap.secret", "users"};

void
fuzz_setup(void)
{
	for (guint i = 0; i < G_N_ELEMENTS(files); i++)
		g_free(fuzz_scratch_file(files[i], "x\n"));
	path = fuzz_scratch_file("gatehouse.conf", "");
	dir = g_path_get_dirname(path);
}

static gboolean
has(const uint8_t *data, size_t size, const char *word)
{
	return memmem(data, size, word, strlen(word)) != NULL;
}

/* The LINE of "PATH:LINE: ...", or 0 for "PATH: ...". */
static guint
problem_line(const char *msg)
{
	gsize plen = strlen(path);
	const char *p;
	guint64 line;
	char *end = NULL;

	FUZZ_CHECK(strncmp(msg, path, plen) == 0 && msg[plen] == ':');
	p = msg + plen + 1;
	if (*p == ' ')
		return 0;
	line = g_ascii_strtoull(p, &end, 10);
	FUZZ_CHECK(end != p && end[0] == ':' && end[1] == ' ');
	FUZZ_CHECK(line > 0 && line <= G_MAXUINT);
	return (guint)line;
}

/* Each look-up reads the file again: the first 16 keys are enough. */
static void
check_keys(GKeyFile *kf, guint lines)
{
	g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
	guint budget = 16;

	for (guint i = 0; groups[i] != NULL && budget > 0; i++) {
		g_auto(GStrv) keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
		guint gl = gh_key_file_line(path, groups[i], NULL);

		FUZZ_CHECK(gl >= 1 && gl <= lines);
		for (guint j = 0; keys != NULL && keys[j] != NULL && budget > 0; j++, budget--) {
			g_autofree char *raw = g_key_file_get_value(kf, groups[i], keys[j], NULL);
			g_autofree char *peek = gh_key_file_peek(path, groups[i], keys[j]);
			guint kl = gh_key_file_line(path, groups[i], keys[j]);

			FUZZ_CHECK(kl > gl && kl <= lines);
			FUZZ_CHECK(raw != NULL && peek != NULL);
			if (strcmp(raw, peek) != 0) {
				fprintf(stderr, "[%s] %s: GKeyFile '%s', peek '%s'\n", groups[i],
					keys[j], raw, peek);
				FUZZ_CHECK(!"gh_key_file_peek differs from GKeyFile");
			}
		}
	}
}

static void
check_config(const GhConfig *cfg)
{
	FUZZ_CHECK(cfg->listeners->len > 0 && cfg->workers > 0);
	FUZZ_CHECK(cfg->hostname != NULL && *cfg->hostname != '\0');
	for (guint i = 0; i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		const GhBackendConfig *bc = gh_config_backend(cfg, lc->backend);

		FUZZ_CHECK(gh_config_listener(cfg, lc->name) == lc);
		FUZZ_CHECK(lc->auth != NULL && lc->auth[0] != NULL);
		for (guint j = 0; lc->auth[j] != NULL; j++)
			FUZZ_CHECK(gh_config_auth(cfg, lc->auth[j]) != NULL);
		FUZZ_CHECK(bc != NULL && bc->protocol == lc->protocol);
		if (lc->tls != GH_TLS_NONE)
			FUZZ_CHECK(cfg->tls.certificates != NULL && cfg->tls.keys != NULL);
		if (lc->proxy_protocol)
			FUZZ_CHECK(cfg->proxy_trusted_networks->len > 0);
	}
	for (guint i = 0; i < cfg->backends->len; i++) {
		const GhBackendConfig *bc = g_ptr_array_index(cfg->backends, i);

		FUZZ_CHECK(gh_config_backend(cfg, bc->name) == bc);
		FUZZ_CHECK(bc->servers->len > 0);
		for (guint j = 0; j < bc->servers->len; j++) {
			const GhHostPort *hp = &g_array_index(bc->servers, GhHostPort, j);
			FUZZ_CHECK(hp->host != NULL && *hp->host != '\0' && hp->port > 0);
		}
		if (bc->login == GH_LOGIN_MASTER)
			FUZZ_CHECK(bc->master_user != NULL && bc->master_password_file != NULL);
	}
	for (guint i = 0; i < cfg->auths->len; i++) {
		const GhAuthGroupConfig *ac = g_ptr_array_index(cfg->auths, i);
		FUZZ_CHECK(gh_config_auth(cfg, ac->name) == ac && ac->module != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autofree char *raw = NULL;
	g_autofree char *text = NULL;
	gsize len;
	guint lines = 1;
	GError *error = NULL;
	GKeyFile *kf;
	GPtrArray *problems;
	GhConfig *cfg;

	if (has(data, size, "/dev") || has(data, size, "/proc") || has(data, size, "/sys") ||
	    has(data, size, ".."))
		return -1;                         /* not added to the corpus */
	raw = g_strndup((const char *)data, size); /* for the replacement only */
	if (strlen(raw) == size) {
		g_auto(GStrv) parts = g_strsplit(raw, "@DIR@", -1);
		text = g_strjoinv(dir, parts);
	} else {
		text = g_memdup2(data, size); /* a NUL inside: no replacement */
	}
	len = strlen(raw) == size ? strlen(text) : size;
	for (gsize i = 0; i < len; i++)
		lines += text[i] == '\n';
	FUZZ_CHECK(g_file_set_contents(path, text, (gssize)len, NULL));

	kf = gh_key_file_load_from_data(path, text, len, &error);
	problems = g_ptr_array_new_with_free_func(g_free);
	cfg = gh_config_load(path, problems);
	if (kf == NULL) {
		/* refused by the key-file reader: the loader says just that */
		g_auto(GStrv) want = NULL;

		FUZZ_CHECK(error != NULL && cfg == NULL);
		want = g_strsplit(error->message, "\n", -1);
		FUZZ_CHECK(g_strv_length(want) == problems->len);
		for (guint i = 0; i < problems->len; i++)
			FUZZ_CHECK(strcmp(want[i], g_ptr_array_index(problems, i)) == 0);
		g_clear_error(&error);
	} else {
		FUZZ_CHECK(error == NULL);
		check_keys(kf, lines);
		g_key_file_unref(kf);
	}
	if (cfg == NULL) {
		guint prev = 1;

		FUZZ_CHECK(problems->len > 0);
		for (guint i = 0; i < problems->len; i++) {
			const char *msg = g_ptr_array_index(problems, i);
			guint line = problem_line(msg);

			FUZZ_CHECK(g_utf8_validate(msg, -1, NULL));
			FUZZ_CHECK(line <= lines);
			if (kf != NULL) {
				/* sorted by line, those without one last */
				guint key = line == 0 ? G_MAXUINT : line;
				FUZZ_CHECK(key >= prev);
				prev = key;
			}
		}
	} else {
		FUZZ_CHECK(problems->len == 0);
		check_config(cfg);
		FUZZ_CHECK(gh_config_ref(cfg) == cfg);
		gh_config_unref(cfg);
		gh_config_unref(cfg);
	}
	g_ptr_array_unref(problems);
	return 0;
}
