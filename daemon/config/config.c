/*
 * config.c: gatehouse.conf (gatehouse.conf(5)) read into a GhConfig (see
 * config.h), plus the small address parsers the config and the daemon share
 * (CIDR networks, host:port).
 *
 * Loading has two passes over the key file: every group on its own (known
 * keys, well-formed values, required keys, readable files), then the links
 * between groups (auth chains, backends, TLS for listeners that need it).
 * Each problem is appended to the caller's list with its file, line, group
 * and key, and loading goes on, so that `gatehoused -t` shows everything to
 * fix in one run.
 *
 * Invariants:
 *  - gh_config_load() returns a config only when it found no problem; it never
 *    returns a half-filled one.  In a returned config every list the header
 *    says is non-empty is non-empty and every name reference resolves.
 *  - A loaded GhConfig is never modified; it is shared between threads by
 *    reference counting (atomic), and freed with its last reference.
 *  - Nothing here logs: problems travel back as strings.
 */
#include "gh-build.h"

#include "config/config.h"
#include "common/keyfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef GH_MODULE_DIR
#define GH_MODULE_DIR "/usr/local/lib/gatehouse/modules"
#endif

#define GH_DEFAULT_CONTROL_SOCKET "/run/gatehouse/control"
#define GH_DEFAULT_TRUSTED_NETWORKS "127.0.0.0/8 ::1/128"
#define GH_DEFAULT_PRIORITIES "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1"
/* RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next
 * command; RFC 9051 5.4: an IMAP inactivity timer of at least 30 minutes;
 * RFC 1939 3: a POP3 one of at least 10 minutes. */
#define GH_DEFAULT_IDLE_SMTP 300
#define GH_DEFAULT_IDLE_IMAP 1800
#define GH_DEFAULT_IDLE_POP3 600
#define GH_MAX_SECONDS 86400
/* sizeof(struct sockaddr_un.sun_path) on Linux, with its NUL */
#define GH_UNIX_PATH_MAX 108

/* ------------------------------------------------------------ enum names */

typedef struct {
	const char *name;
	int value;
} EnumName;

static const EnumName protocol_names[] = {
    {"smtp", GH_PROTO_SMTP},
    {"imap", GH_PROTO_IMAP},
    {"pop3", GH_PROTO_POP3},
    {NULL, 0},
};

static const EnumName tls_mode_names[] = {
    {"none", GH_TLS_NONE},
    {"starttls", GH_TLS_STARTTLS},
    {"implicit", GH_TLS_IMPLICIT},
    {NULL, 0},
};

static const EnumName plaintext_auth_names[] = {
    {"always", GH_PLAINTEXT_ALWAYS},
    {"tls", GH_PLAINTEXT_TLS},
    {"trusted", GH_PLAINTEXT_TRUSTED},
    {NULL, 0},
};

static const EnumName backend_login_names[] = {
    {"passthrough", GH_LOGIN_PASSTHROUGH},
    {"master", GH_LOGIN_MASTER},
    {"xclient", GH_LOGIN_XCLIENT},
    {"none", GH_LOGIN_NONE},
    {NULL, 0},
};

static const EnumName proxy_version_names[] = {
    {"none", GH_PROXY_NONE},
    {"v1", GH_PROXY_V1},
    {"v2", GH_PROXY_V2},
    {NULL, 0},
};

static const char *
enum_to_string(const EnumName *names, int value)
{
	for (guint i = 0; names[i].name != NULL; i++) {
		if (names[i].value == value)
			return names[i].name;
	}
	return "unknown";
}

const char *
gh_protocol_to_string(GhProtocolKind p)
{
	return enum_to_string(protocol_names, p);
}

const char *
gh_tls_mode_to_string(GhTlsMode m)
{
	return enum_to_string(tls_mode_names, m);
}

const char *
gh_plaintext_auth_to_string(GhPlaintextAuth p)
{
	return enum_to_string(plaintext_auth_names, p);
}

const char *
gh_backend_login_to_string(GhBackendLogin l)
{
	return enum_to_string(backend_login_names, l);
}

const char *
gh_proxy_version_to_string(GhProxyVersion v)
{
	return enum_to_string(proxy_version_names, v);
}

/* ------------------------------------------------------------ CIDR */

static gboolean
all_digits(const char *s)
{
	if (s == NULL || *s == '\0')
		return FALSE;
	for (; *s != '\0'; s++) {
		if (!g_ascii_isdigit(*s))
			return FALSE;
	}
	return TRUE;
}

gboolean
gh_cidr_parse(const char *text, GhCidr *out)
{
	g_autofree char *addr_text = NULL;
	g_autoptr(GInetAddress) addr = NULL;
	const char *slash;
	guint max, prefix;
	GhCidr net = {0};

	g_return_val_if_fail(out != NULL, FALSE);

	if (text == NULL || *text == '\0')
		return FALSE;
	slash = strchr(text, '/');
	addr_text = slash != NULL ? g_strndup(text, slash - text) : g_strdup(text);
	/* inet_pton underneath: strict dotted quads, no names, no blanks */
	addr = g_inet_address_new_from_string(addr_text);
	if (addr == NULL)
		return FALSE;
	net.family = g_inet_address_get_family(addr);
	if (net.family != G_SOCKET_FAMILY_IPV4 && net.family != G_SOCKET_FAMILY_IPV6)
		return FALSE;
	max = g_inet_address_get_native_size(addr) * 8;
	memcpy(net.addr, g_inet_address_to_bytes(addr), g_inet_address_get_native_size(addr));
	prefix = max;
	if (slash != NULL) {
		guint64 v;
		if (!all_digits(slash + 1) || strlen(slash + 1) > 3)
			return FALSE;
		v = g_ascii_strtoull(slash + 1, NULL, 10);
		if (v > max)
			return FALSE;
		prefix = (guint)v;
	}
	net.prefix = prefix;
	/* "10.1.2.3/8" means 10.0.0.0/8: clear the host bits so that the
	 * stored network reads back as what it matches. */
	for (guint bit = prefix; bit < max; bit++)
		net.addr[bit / 8] &= (guint8) ~(0x80u >> (bit % 8));
	*out = net;
	return TRUE;
}

static gboolean
prefix_equal(const guint8 *a, const guint8 *b, guint prefix)
{
	guint whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, whole) != 0)
		return FALSE;
	if (rest == 0)
		return TRUE;
	return ((a[whole] ^ b[whole]) & (guint8)(0xff00u >> rest)) == 0;
}

/* `bytes`: 4 (IPv4) or 16 (IPv6) in network order */
static gboolean
match_bytes(const GhCidr *net, GSocketFamily family, const guint8 *bytes)
{
	static const guint8 v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	guint8 mapped[16];

	if (family == net->family)
		return prefix_equal(net->addr, bytes, net->prefix);
	/* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d (RFC 4291
	 * 2.5.5.2): they belong to the IPv4 networks the admin wrote, and an
	 * IPv4 address belongs to a ::ffff:0:0/96-style IPv6 network. */
	if (family == G_SOCKET_FAMILY_IPV6 && net->family == G_SOCKET_FAMILY_IPV4) {
		if (memcmp(bytes, v4_mapped, sizeof v4_mapped) != 0)
			return FALSE;
		return prefix_equal(net->addr, bytes + 12, net->prefix);
	}
	if (family == G_SOCKET_FAMILY_IPV4 && net->family == G_SOCKET_FAMILY_IPV6) {
		memcpy(mapped, v4_mapped, sizeof v4_mapped);
		memcpy(mapped + 12, bytes, 4);
		return prefix_equal(net->addr, mapped, net->prefix);
	}
	return FALSE;
}

gboolean
gh_cidr_match(const GhCidr *net, GInetAddress *addr)
{
	g_return_val_if_fail(net != NULL, FALSE);
	if (addr == NULL)
		return FALSE;
	return match_bytes(net, g_inet_address_get_family(addr), g_inet_address_to_bytes(addr));
}

gboolean
gh_cidr_list_match_text(const GArray *nets, const char *text)
{
	guint8 bytes[16];
	GSocketFamily family;

	if (nets == NULL || nets->len == 0 || text == NULL)
		return FALSE;
	if (inet_pton(AF_INET, text, bytes) == 1)
		family = G_SOCKET_FAMILY_IPV4;
	else if (inet_pton(AF_INET6, text, bytes) == 1)
		family = G_SOCKET_FAMILY_IPV6;
	else
		return FALSE;
	for (guint i = 0; i < nets->len; i++) {
		if (match_bytes(&g_array_index(nets, GhCidr, i), family, bytes))
			return TRUE;
	}
	return FALSE;
}

gboolean
gh_cidr_list_match(const GArray *nets, GInetAddress *addr)
{
	for (guint i = 0; nets != NULL && i < nets->len; i++) {
		if (gh_cidr_match(&g_array_index(nets, GhCidr, i), addr))
			return TRUE;
	}
	return FALSE;
}

/* ------------------------------------------------------------ host:port */

static gboolean
valid_dns_name(const char *host)
{
	gsize len = strlen(host), label = 0;

	if (len == 0 || len > 253)
		return FALSE;
	for (const char *p = host; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0)
				return FALSE;
			label = 0;
			continue;
		}
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_')
			return FALSE;
		if (++label > 63)
			return FALSE;
	}
	return TRUE;
}

static gboolean
looks_like_ipv4(const char *host)
{
	return host[strspn(host, "0123456789.")] == '\0';
}

gboolean
gh_host_port_parse(const char *text, GhHostPort *out, const char **error_out)
{
	g_autofree char *host = NULL;
	const char *port_text;
	const char *error = NULL;
	guint64 port;

	g_return_val_if_fail(out != NULL, FALSE);

	if (text == NULL || *text == '\0') {
		error = "empty";
	} else if (*text == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL) {
			error = "missing ']'";
		} else {
			g_autoptr(GInetAddress) addr = NULL;
			host = g_strndup(text + 1, close - text - 1);
			addr = g_inet_address_new_from_string(host);
			if (addr == NULL || g_inet_address_get_family(addr) != G_SOCKET_FAMILY_IPV6)
				error = "bad address";
			else if (close[1] == '\0')
				error = "missing port";
			else if (close[1] != ':')
				error = "bad address";
		}
		port_text = close != NULL ? close + 2 : NULL;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon == NULL) {
			error = "missing port";
		} else {
			host = g_strndup(text, colon - text);
			if (*host == '\0')
				error = "missing host";
			else if (strchr(host, ':') != NULL)
				error = "IPv6 address needs [brackets]";
			else if (strcmp(host, "*") == 0)
				; /* the listener wildcard */
			else if (looks_like_ipv4(host) && !g_hostname_is_ip_address(host))
				error = "bad address";
			else if (!looks_like_ipv4(host) && !valid_dns_name(host))
				error = "bad host name";
		}
		port_text = colon != NULL ? colon + 1 : NULL;
	}
	if (error == NULL) {
		if (*port_text == '\0')
			error = "missing port";
		else if (!all_digits(port_text) || strlen(port_text) > 5)
			error = "bad port";
	}
	if (error == NULL) {
		port = g_ascii_strtoull(port_text, NULL, 10);
		if (port < 1 || port > 65535)
			error = "bad port";
	}
	if (error != NULL) {
		if (error_out != NULL)
			*error_out = error;
		return FALSE;
	}
	out->host = g_steal_pointer(&host);
	out->port = (guint16)port;
	return TRUE;
}

void
gh_host_port_clear(GhHostPort *hp)
{
	if (hp == NULL)
		return;
	g_clear_pointer(&hp->host, g_free);
	hp->port = 0;
}

static void
host_port_clear_cb(gpointer data)
{
	gh_host_port_clear(data);
}

static GArray *
host_port_array_new(void)
{
	GArray *a = g_array_new(FALSE, TRUE, sizeof(GhHostPort));
	g_array_set_clear_func(a, host_port_clear_cb);
	return a;
}

/* ------------------------------------------------------------ lifetime */

static void
listener_free(gpointer data)
{
	GhListenerConfig *lc = data;
	g_free(lc->name);
	g_clear_pointer(&lc->listen, g_array_unref);
	g_strfreev(lc->auth);
	g_free(lc->backend);
	g_free(lc);
}

static void
auth_free(gpointer data)
{
	GhAuthGroupConfig *ac = data;
	g_free(ac->name);
	g_free(ac->module);
	g_free(ac);
}

static void
backend_free(gpointer data)
{
	GhBackendConfig *bc = data;
	g_free(bc->name);
	g_clear_pointer(&bc->servers, g_array_unref);
	g_free(bc->master_user);
	g_free(bc->master_password_file);
	g_free(bc->ca_file);
	g_free(bc);
}

static GhConfig *
config_new(const char *path)
{
	GhConfig *cfg = g_new0(GhConfig, 1);

	cfg->ref_count = 1;
	cfg->path = g_strdup(path);
	cfg->hostname = g_strdup(g_get_host_name());
	cfg->module_dir = g_strdup(GH_MODULE_DIR);
	cfg->control_socket = g_strdup(GH_DEFAULT_CONTROL_SOCKET);
	cfg->trusted_networks = g_array_new(FALSE, TRUE, sizeof(GhCidr));
	cfg->proxy_trusted_networks = g_array_new(FALSE, TRUE, sizeof(GhCidr));
	cfg->shutdown_timeout = 30;
	cfg->workers = 0;
	cfg->failure_delay = 2;
	cfg->auth_workers = 8;
	cfg->auth_queue_max = 1024;
	cfg->auth_cache_size = 10000;
	cfg->auth_cache_ttl = 300;
	cfg->auth_cache_negative_ttl = 60;
	cfg->tls.priorities = g_strdup(GH_DEFAULT_PRIORITIES);
	cfg->listeners = g_ptr_array_new_with_free_func(listener_free);
	cfg->auths = g_ptr_array_new_with_free_func(auth_free);
	cfg->backends = g_ptr_array_new_with_free_func(backend_free);
	return cfg;
}

GhConfig *
gh_config_ref(GhConfig *cfg)
{
	g_return_val_if_fail(cfg != NULL, NULL);
	g_atomic_int_inc(&cfg->ref_count);
	return cfg;
}

void
gh_config_unref(GhConfig *cfg)
{
	if (cfg == NULL || !g_atomic_int_dec_and_test(&cfg->ref_count))
		return;
	g_free(cfg->path);
	g_clear_pointer(&cfg->kf, g_key_file_unref);
	g_free(cfg->hostname);
	g_free(cfg->user);
	g_free(cfg->group);
	g_free(cfg->module_dir);
	g_free(cfg->control_socket);
	g_clear_pointer(&cfg->trusted_networks, g_array_unref);
	g_clear_pointer(&cfg->proxy_trusted_networks, g_array_unref);
	g_strfreev(cfg->tls.certificates);
	g_strfreev(cfg->tls.keys);
	g_free(cfg->tls.priorities);
	g_clear_pointer(&cfg->listeners, g_ptr_array_unref);
	g_clear_pointer(&cfg->auths, g_ptr_array_unref);
	g_clear_pointer(&cfg->backends, g_ptr_array_unref);
	if (cfg->metrics_listen != NULL) {
		gh_host_port_clear(cfg->metrics_listen);
		g_free(cfg->metrics_listen);
	}
	g_free(cfg);
}

const GhListenerConfig *
gh_config_listener(const GhConfig *cfg, const char *name)
{
	for (guint i = 0; cfg != NULL && name != NULL && i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		if (strcmp(lc->name, name) == 0)
			return lc;
	}
	return NULL;
}

const GhBackendConfig *
gh_config_backend(const GhConfig *cfg, const char *name)
{
	for (guint i = 0; cfg != NULL && name != NULL && i < cfg->backends->len; i++) {
		const GhBackendConfig *bc = g_ptr_array_index(cfg->backends, i);
		if (strcmp(bc->name, name) == 0)
			return bc;
	}
	return NULL;
}

const GhAuthGroupConfig *
gh_config_auth(const GhConfig *cfg, const char *name)
{
	for (guint i = 0; cfg != NULL && name != NULL && i < cfg->auths->len; i++) {
		const GhAuthGroupConfig *ac = g_ptr_array_index(cfg->auths, i);
		if (strcmp(ac->name, name) == 0)
			return ac;
	}
	return NULL;
}

/* ------------------------------------------------------------ the loader */

typedef struct {
	GhConfig *cfg;
	GPtrArray *problems;
	guint n_problems;
	/* groups whose `protocol` is missing or bad: links to them are not
	 * checked, so one mistake gives one message */
	GHashTable *bad_protocol;
} Loader;

static void problem(Loader *ld, const char *group, const char *key, const char *format, ...)
    G_GNUC_PRINTF(4, 5);

static void
problem(Loader *ld, const char *group, const char *key, const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	g_ptr_array_add(ld->problems, gh_key_file_problemv(ld->cfg->path, group, key, format, ap));
	va_end(ap);
	ld->n_problems++;
}

static gboolean
has_key(Loader *ld, const char *group, const char *key)
{
	return g_key_file_has_key(ld->cfg->kf, group, key, NULL);
}

/* The value of `key`, unescaped, or NULL when absent.  A value GKeyFile
 * cannot unescape is reported and then taken raw, so that the keys that
 * depend on it are still checked.  (transfer full) */
static char *
get_value(Loader *ld, const char *group, const char *key)
{
	g_autoptr(GError) error = NULL;
	char *value;

	if (!has_key(ld, group, key))
		return NULL;
	value = g_key_file_get_string(ld->cfg->kf, group, key, &error);
	/* GLib 2.74 returns a half-unescaped value and sets the error */
	if (error != NULL) {
		problem(ld, group, key,
			"bad escape in the value: after '\\' only s, n, t, r or '\\' may follow");
		g_free(value);
		value = g_key_file_get_value(ld->cfg->kf, group, key, NULL);
	}
	return value;
}

/* A string key: its value, or `def` when absent or empty.  (transfer full) */
static char *
get_string(Loader *ld, const char *group, const char *key, const char *def)
{
	g_autofree char *value = get_value(ld, group, key);

	if (value == NULL || *value == '\0')
		return g_strdup(def);
	return g_steal_pointer(&value);
}

static char *
enum_choices(const EnumName *names)
{
	GString *s = g_string_new(NULL);
	guint n = 0;

	while (names[n].name != NULL)
		n++;
	for (guint i = 0; i < n; i++) {
		if (i > 0)
			g_string_append(s, i == n - 1 ? " or " : ", ");
		g_string_append(s, names[i].name);
	}
	return g_string_free(s, FALSE);
}

/* An enum key.  Returns TRUE and sets *out when the key holds one of
 * `names`; when absent, reports it if `required` and otherwise leaves *out
 * (the default) alone and returns TRUE. */
static gboolean
get_enum(Loader *ld,
	 const char *group,
	 const char *key,
	 const EnumName *names,
	 gboolean required,
	 int *out)
{
	g_autofree char *value = get_value(ld, group, key);
	g_autofree char *choices = enum_choices(names);

	if (value == NULL || *value == '\0') {
		if (!required && value == NULL)
			return TRUE;
		problem(ld, group, key, "%s: expected %s",
			value == NULL ? "missing" : "empty value", choices);
		return FALSE;
	}
	for (guint i = 0; names[i].name != NULL; i++) {
		/* admins write "SMTP" as often as "smtp" */
		if (g_ascii_strcasecmp(value, names[i].name) == 0) {
			*out = names[i].value;
			return TRUE;
		}
	}
	problem(ld, group, key, "bad value '%s': expected %s", value, choices);
	return FALSE;
}

static gboolean
get_bool(Loader *ld, const char *group, const char *key, gboolean def)
{
	static const char *const yes[] = {"yes", "true", "1", NULL};
	static const char *const no[] = {"no", "false", "0", NULL};
	g_autofree char *value = get_value(ld, group, key);

	if (value == NULL)
		return def;
	for (guint i = 0; yes[i] != NULL; i++) {
		if (g_ascii_strcasecmp(value, yes[i]) == 0)
			return TRUE;
		if (g_ascii_strcasecmp(value, no[i]) == 0)
			return FALSE;
	}
	problem(ld, group, key, "bad value '%s': expected yes or no", value);
	return def;
}

static guint
get_uint(Loader *ld, const char *group, const char *key, guint def, guint min, guint max)
{
	g_autofree char *value = get_value(ld, group, key);
	guint64 v;

	if (value == NULL)
		return def;
	/* digits only: no sign, no hex, no unit, no blanks (a value of "-1"
	 * or "30s" would otherwise read as something the admin did not mean) */
	if (!all_digits(value) || strlen(value) > 10 ||
	    (v = g_ascii_strtoull(value, NULL, 10)) < min || v > max) {
		problem(ld, group, key, "bad value '%s': expected a whole number from %u to %u",
			value, min, max);
		return def;
	}
	return (guint)v;
}

/* A list key (blank-separated).  NULL when absent.  (transfer full) */
static char **
get_list(Loader *ld, const char *group, const char *key)
{
	g_autofree char *value = get_value(ld, group, key);

	if (value == NULL)
		return NULL;
	return gh_key_file_split_list(value);
}

/* Report `file` unless it is a file we can open for reading now. */
static gboolean
check_readable(Loader *ld, const char *group, const char *key, const char *file)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO named by mistake must not hang the loader */
	fd = g_open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
	if (fd < 0) {
		int e = errno;
		problem(ld, group, key, "cannot read %s: %s", file, g_strerror(e));
		return FALSE;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		problem(ld, group, key, "cannot read %s: %s", file, g_strerror(EISDIR));
		close(fd);
		return FALSE;
	}
	close(fd);
	return TRUE;
}

/* Unknown keys: typos must not pass silently ("listne = ..."). */
static void
check_keys(Loader *ld, const char *group, const char *const *known)
{
	g_auto(GStrv) keys = g_key_file_get_keys(ld->cfg->kf, group, NULL, NULL);

	for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
		if (!g_strv_contains(known, keys[i])) {
			g_autofree char *list = g_strjoinv(", ", (char **)known);
			problem(ld, group, keys[i], "unknown key (known here: %s)", list);
		}
	}
}

/* Names of listeners, auth and backend groups: also systemd's
 * FileDescriptorName= (at most 255 characters, no ':'); we keep to a set
 * that needs no quoting anywhere. */
static gboolean
valid_name(const char *name)
{
	gsize len = strlen(name);

	if (len == 0 || len > 255)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		char c = name[i];
		if (!g_ascii_isalnum(c) && c != '_' && c != '.' && c != '-')
			return FALSE;
	}
	return TRUE;
}

static gboolean
valid_hostname(const char *name)
{
	/* it goes into every banner and greeting: no blanks or controls */
	for (const char *p = name; *p != '\0'; p++) {
		if (g_ascii_isspace(*p) || g_ascii_iscntrl(*p))
			return FALSE;
	}
	return *name != '\0' && strlen(name) <= 255;
}

/* ------------------------------------------------------------ [gatehouse] */

static const char *const gatehouse_keys[] = {
    "hostname",
    "user",
    "group",
    "module_dir",
    "control_socket",
    "trusted_networks",
    "proxy_trusted_networks",
    "shutdown_timeout",
    "workers",
    "failure_delay",
    "auth_workers",
    "auth_queue_max",
    "auth_cache_size",
    "auth_cache_ttl",
    "auth_cache_negative_ttl",
    NULL,
};

/* A list of networks under `key` of `group` (absent: `def`) into `out`. */
static void
parse_networks(Loader *ld, const char *group, const char *key, const char *def, GArray *out)
{
	g_auto(GStrv) nets = NULL;

	if (group != NULL && has_key(ld, group, key))
		nets = get_list(ld, group, key);
	else
		nets = gh_key_file_split_list(def);
	/* an empty value is meaningful: no network at all */
	for (guint i = 0; nets != NULL && nets[i] != NULL; i++) {
		GhCidr net;
		if (!gh_cidr_parse(nets[i], &net)) {
			problem(ld, group, key,
				"bad network '%s': expected an address or a network such as "
				"192.0.2.0/24 or 2001:db8::/32",
				nets[i]);
			continue;
		}
		g_array_append_val(out, net);
	}
}

static void
parse_trusted_networks(Loader *ld, const char *group)
{
	parse_networks(ld, group, "trusted_networks", GH_DEFAULT_TRUSTED_NETWORKS,
		       ld->cfg->trusted_networks);
	/* no default: a PROXY header is believed only from balancers named here */
	parse_networks(ld, group, "proxy_trusted_networks", "", ld->cfg->proxy_trusted_networks);
}

static void
parse_gatehouse(Loader *ld, const char *group)
{
	GhConfig *cfg = ld->cfg;
	char *s;

	check_keys(ld, group, gatehouse_keys);

	s = get_string(ld, group, "hostname", NULL);
	if (s != NULL && !valid_hostname(s)) {
		problem(ld, group, "hostname", "bad host name '%s': no blanks allowed", s);
		g_free(s);
	} else if (s != NULL) {
		g_free(cfg->hostname);
		cfg->hostname = s;
	}
	cfg->user = get_string(ld, group, "user", NULL);
	cfg->group = get_string(ld, group, "group", NULL);
	s = get_string(ld, group, "module_dir", GH_MODULE_DIR);
	g_free(cfg->module_dir);
	cfg->module_dir = s;
	/* present but empty: no control socket (absent: the default) */
	s = get_value(ld, group, "control_socket");
	if (s == NULL)
		s = g_strdup(GH_DEFAULT_CONTROL_SOCKET);
	if (strlen(s) >= GH_UNIX_PATH_MAX)
		problem(ld, group, "control_socket",
			"path too long for a unix socket (at most %u bytes)", GH_UNIX_PATH_MAX - 1);
	else if (s[0] != '\0' && s[0] != '/')
		problem(ld, group, "control_socket",
			"'%s' is not an absolute path (empty: no control socket)", s);
	g_free(cfg->control_socket);
	cfg->control_socket = s;
	parse_trusted_networks(ld, group);

	cfg->shutdown_timeout =
	    get_uint(ld, group, "shutdown_timeout", cfg->shutdown_timeout, 0, GH_MAX_SECONDS);
	cfg->workers = get_uint(ld, group, "workers", cfg->workers, 0, 256);
	cfg->failure_delay = get_uint(ld, group, "failure_delay", cfg->failure_delay, 0, 60);
	cfg->auth_workers = get_uint(ld, group, "auth_workers", cfg->auth_workers, 1, 1024);
	cfg->auth_queue_max =
	    get_uint(ld, group, "auth_queue_max", cfg->auth_queue_max, 1, 1048576);
	cfg->auth_cache_size =
	    get_uint(ld, group, "auth_cache_size", cfg->auth_cache_size, 0, 10000000);
	cfg->auth_cache_ttl =
	    get_uint(ld, group, "auth_cache_ttl", cfg->auth_cache_ttl, 0, GH_MAX_SECONDS);
	cfg->auth_cache_negative_ttl = get_uint(ld, group, "auth_cache_negative_ttl",
						cfg->auth_cache_negative_ttl, 0, GH_MAX_SECONDS);
}

/* ------------------------------------------------------------ [tls] */

static const char *const tls_keys[] = {"certificate", "key", "priorities", NULL};

static char **
get_file_list(Loader *ld, const char *group, const char *key)
{
	char **files = get_list(ld, group, key);

	if (files != NULL && files[0] == NULL)
		g_clear_pointer(&files, g_strfreev); /* "certificate =" is no certificate */
	for (guint i = 0; files != NULL && files[i] != NULL; i++)
		check_readable(ld, group, key, files[i]);
	return files;
}

static void
parse_tls(Loader *ld, const char *group)
{
	GhTlsConfig *tls = &ld->cfg->tls;
	char *s;

	check_keys(ld, group, tls_keys);
	tls->certificates = get_file_list(ld, group, "certificate");
	tls->keys = get_file_list(ld, group, "key");
	if (tls->certificates != NULL && tls->keys == NULL) {
		problem(ld, group, "key", "missing: each certificate needs its private key");
	} else if (tls->certificates == NULL && tls->keys != NULL) {
		problem(ld, group, "certificate", "missing: each key needs its certificate");
	} else if (tls->certificates != NULL &&
		   g_strv_length(tls->certificates) != g_strv_length(tls->keys)) {
		problem(ld, group, "key",
			"%u certificate files but %u key files: list them in pairs, in the same "
			"order",
			g_strv_length(tls->certificates), g_strv_length(tls->keys));
	}
	s = get_string(ld, group, "priorities", GH_DEFAULT_PRIORITIES);
	g_free(tls->priorities);
	tls->priorities = s;
}

/* ------------------------------------------------------------ [listener NAME] */

static const char *const listener_keys[] = {
    "protocol",       "listen",  "tls",          "plaintext_auth",  "require_auth",
    "auth",           "backend", "idle_timeout", "max_connections", "max_auth_failures",
    "proxy_protocol", NULL,
};

static void
parse_listen(Loader *ld, const char *group, GhListenerConfig *lc)
{
	g_auto(GStrv) addrs = get_list(ld, group, "listen");

	for (guint i = 0; addrs != NULL && addrs[i] != NULL; i++) {
		GhHostPort hp = {0};
		const char *why = NULL;

		if (!gh_host_port_parse(addrs[i], &hp, &why)) {
			problem(ld, group, "listen", "bad listen address '%s': %s", addrs[i], why);
			continue;
		}
		/* bind() takes addresses: a name could resolve to anything */
		if (strcmp(hp.host, "*") != 0 && !g_hostname_is_ip_address(hp.host)) {
			problem(ld, group, "listen",
				"bad listen address '%s': an IP address or '*' is needed, not a "
				"host name",
				addrs[i]);
			gh_host_port_clear(&hp);
			continue;
		}
		g_array_append_val(lc->listen, hp);
	}
}

/* The login-state inactivity timer each protocol's RFC asks for. */
static guint
default_idle(GhProtocolKind p)
{
	switch (p) {
	case GH_PROTO_IMAP:
		return GH_DEFAULT_IDLE_IMAP;
	case GH_PROTO_POP3:
		return GH_DEFAULT_IDLE_POP3;
	case GH_PROTO_SMTP:
		break;
	}
	return GH_DEFAULT_IDLE_SMTP;
}

static void
parse_listener(Loader *ld, const char *group, const char *name)
{
	GhListenerConfig *lc = g_new0(GhListenerConfig, 1);
	g_auto(GStrv) auth = NULL;
	g_autofree char *backend = NULL;
	int v;

	lc->name = g_strdup(name);
	lc->listen = host_port_array_new();
	g_ptr_array_add(ld->cfg->listeners, lc);

	check_keys(ld, group, listener_keys);
	if (get_enum(ld, group, "protocol", protocol_names, TRUE, &v))
		lc->protocol = v;
	else
		g_hash_table_add(ld->bad_protocol, g_strdup(group));
	parse_listen(ld, group, lc);
	v = GH_TLS_NONE;
	if (get_enum(ld, group, "tls", tls_mode_names, FALSE, &v))
		lc->tls = v;
	v = GH_PLAINTEXT_TRUSTED;
	if (get_enum(ld, group, "plaintext_auth", plaintext_auth_names, FALSE, &v))
		lc->plaintext_auth = v;
	/* meaningful for SMTP only (IMAP and POP3 clients always log in), but a bad
	 * value is still a typo worth reporting */
	lc->require_auth = get_bool(ld, group, "require_auth", TRUE);

	auth = get_list(ld, group, "auth");
	if (auth == NULL || auth[0] == NULL) {
		problem(ld, group, "auth",
			"missing: name at least one [auth NAME] group, the auth chain tried in "
			"order");
	} else {
		for (guint i = 1; auth[i] != NULL; i++) {
			for (guint j = 0; j < i; j++) {
				if (strcmp(auth[i], auth[j]) == 0) {
					problem(ld, group, "auth", "'%s' listed twice", auth[i]);
					break;
				}
			}
		}
	}
	lc->auth = auth != NULL ? g_steal_pointer(&auth) : g_new0(char *, 1);

	backend = get_string(ld, group, "backend", NULL);
	if (backend == NULL)
		problem(ld, group, "backend", "missing: name the [backend NAME] group to proxy to");
	else if (strpbrk(backend, " \t") != NULL)
		problem(ld, group, "backend", "'%s': one backend name only", backend);
	else
		lc->backend = g_steal_pointer(&backend);

	lc->idle_timeout =
	    get_uint(ld, group, "idle_timeout", default_idle(lc->protocol), 1, GH_MAX_SECONDS);
	lc->max_connections = get_uint(ld, group, "max_connections", 0, 0, 1000000);
	lc->max_auth_failures = get_uint(ld, group, "max_auth_failures", 3, 1, 1000);
	lc->proxy_protocol = get_bool(ld, group, "proxy_protocol", FALSE);
}

/* ------------------------------------------------------------ [auth NAME] */

static void
parse_auth(Loader *ld, const char *group, const char *name)
{
	GhAuthGroupConfig *ac = g_new0(GhAuthGroupConfig, 1);

	ac->name = g_strdup(name);
	g_ptr_array_add(ld->cfg->auths, ac);
	/* every other key belongs to the module, which the auth core checks */
	ac->module = get_string(ld, group, "module", NULL);
	if (ac->module == NULL)
		problem(ld, group, "module",
			"missing: name the auth module (file, pam, ldap, ...)");
}

/* ------------------------------------------------------------ [backend NAME] */

static const char *const backend_keys[] = {
    "protocol",        "servers",           "port",
    "follow_route",    "early_connect",     "tls",
    "login",           "master_user",       "master_password_file",
    "forward_client",  "ca_file",           "verify",
    "connect_timeout", "proxy_protocol",    "warm_connections",
    "warm_lifetime",   "reuse_connections", NULL,
};

static void
parse_servers(Loader *ld, const char *group, GhBackendConfig *bc)
{
	g_auto(GStrv) servers = get_list(ld, group, "servers");

	if (servers == NULL || servers[0] == NULL) {
		problem(ld, group, "servers", "missing: list the backend servers as host:port");
		return;
	}
	for (guint i = 0; servers[i] != NULL; i++) {
		GhHostPort hp = {0};
		const char *why = NULL;

		if (!gh_host_port_parse(servers[i], &hp, &why)) {
			problem(ld, group, "servers", "bad server '%s': %s", servers[i], why);
			continue;
		}
		if (strcmp(hp.host, "*") == 0) {
			problem(ld, group, "servers",
				"bad server '%s': a server needs an address or a host name",
				servers[i]);
			gh_host_port_clear(&hp);
			continue;
		}
		g_array_append_val(bc->servers, hp);
	}
}

static void
parse_backend(Loader *ld, const char *group, const char *name)
{
	GhBackendConfig *bc = g_new0(GhBackendConfig, 1);
	gboolean protocol_ok;
	int v;

	bc->name = g_strdup(name);
	bc->servers = host_port_array_new();
	g_ptr_array_add(ld->cfg->backends, bc);

	check_keys(ld, group, backend_keys);
	protocol_ok = get_enum(ld, group, "protocol", protocol_names, TRUE, &v);
	if (protocol_ok)
		bc->protocol = v;
	else
		g_hash_table_add(ld->bad_protocol, g_strdup(group));
	parse_servers(ld, group, bc);
	/* a route without a port (a directory's mailHost) dials this one */
	bc->port = (guint16)get_uint(
	    ld, group, "port",
	    bc->servers->len > 0 ? g_array_index(bc->servers, GhHostPort, 0).port : 0, 1, 65535);
	bc->follow_route = get_bool(ld, group, "follow_route", TRUE);
	bc->early_connect = get_bool(ld, group, "early_connect", TRUE);
	v = GH_TLS_NONE;
	if (get_enum(ld, group, "tls", tls_mode_names, FALSE, &v))
		bc->tls = v;
	v = GH_LOGIN_PASSTHROUGH;
	if (get_enum(ld, group, "login", backend_login_names, FALSE, &v))
		bc->login = v;
	bc->master_user = get_string(ld, group, "master_user", NULL);
	bc->master_password_file = get_string(ld, group, "master_password_file", NULL);
	bc->forward_client = get_bool(ld, group, "forward_client", TRUE);
	bc->ca_file = get_string(ld, group, "ca_file", NULL);
	bc->verify = get_bool(ld, group, "verify", TRUE);
	bc->connect_timeout = get_uint(ld, group, "connect_timeout", 10, 1, 3600);
	v = GH_PROXY_NONE;
	if (get_enum(ld, group, "proxy_protocol", proxy_version_names, FALSE, &v))
		bc->proxy_protocol = v;
	bc->warm_connections = get_uint(ld, group, "warm_connections", 0, 0, 64);
	bc->warm_lifetime = get_uint(ld, group, "warm_lifetime", 60, 1, 3600);
	bc->reuse_connections = get_bool(ld, group, "reuse_connections", FALSE);

	/* a warm connection is made before any client: nothing on it may
	 * name one before the login */
	if (bc->warm_connections > 0 && bc->proxy_protocol != GH_PROXY_NONE)
		problem(ld, group, "warm_connections",
			"needs proxy_protocol = no: the PROXY header names a client, and a warm "
			"connection is opened before there is one");
	/* (with login = xclient, XCLIENT waits for the login anyway) */
	if (bc->warm_connections > 0 && protocol_ok && bc->protocol == GH_PROTO_SMTP &&
	    bc->forward_client && bc->login != GH_LOGIN_XCLIENT)
		problem(ld, group, "warm_connections",
			"needs forward_client = no on an smtp backend: XCLIENT names the client "
			"before the login, and a warm connection is opened before there is one");

	/* a kept connection goes to the next client: nothing on it may still
	 * name the last one.  An AUTH cannot be undone; an XCLIENT's user and
	 * HELO can, by the next XCLIENT (login = xclient names every client
	 * anew), but not its address: Postfix allows the next XCLIENT only to
	 * the address the last one named (smtpd_authorized_xclient_hosts is
	 * checked again after each), so forward_client must be off.  Only
	 * SMTP's QUIT is followed closely enough to know the connection is at
	 * rest. */
	if (bc->reuse_connections && protocol_ok) {
		if (bc->protocol != GH_PROTO_SMTP)
			problem(ld, group, "reuse_connections", "is for smtp backends only");
		else if (bc->login != GH_LOGIN_NONE && bc->login != GH_LOGIN_XCLIENT)
			problem(ld, group, "reuse_connections",
				"needs login = none or xclient: a connection that logged a "
				"user in with AUTH cannot be given to another");
		else if (bc->forward_client)
			problem(ld, group, "reuse_connections", "%s",
				bc->login == GH_LOGIN_NONE
				    ? "needs forward_client = no with login = none: XCLIENT would "
				      "leave one client's address on the connection the next one "
				      "gets"
				    : "needs forward_client = no: once an XCLIENT has named a "
				      "client's address, Postfix allows the next XCLIENT only if "
				      "that address is in its smtpd_authorized_xclient_hosts");
		else if (bc->warm_connections == 0)
			problem(ld, group, "reuse_connections",
				"needs warm_connections: a kept connection waits in that pool");
	}

	/* login = xclient is Postfix's XCLIENT LOGIN=; Dovecot's IMAP and POP3
	 * take XCLIENT or ID for the address only (forward_client) */
	if (bc->login == GH_LOGIN_XCLIENT && protocol_ok && bc->protocol != GH_PROTO_SMTP)
		problem(ld, group, "login", "xclient is for smtp backends only");
	if (bc->login == GH_LOGIN_MASTER) {
		if (bc->master_user == NULL)
			problem(ld, group, "master_user", "missing: login = master needs it");
		if (bc->master_password_file == NULL)
			problem(ld, group, "master_password_file",
				"missing: login = master needs it");
		else
			check_readable(ld, group, "master_password_file", bc->master_password_file);
	}
	if (bc->ca_file != NULL)
		check_readable(ld, group, "ca_file", bc->ca_file);
}

/* ------------------------------------------------------------ [metrics] */

static const char *const metrics_keys[] = {"listen", NULL};

/* One address, checked as a listener's `listen` is: an IP address (IPv6 in
 * brackets) or "*", and a port. */
static void
parse_metrics(Loader *ld, const char *group)
{
	g_autofree char *value = NULL;
	GhHostPort hp = {0};
	const char *why = NULL;

	check_keys(ld, group, metrics_keys);
	value = get_value(ld, group, "listen");
	if (value == NULL)
		return; /* no endpoint */
	g_strstrip(value);
	if (*value == '\0') {
		problem(ld, group, "listen",
			"empty value: write ADDRESS:PORT, or leave the key out for no endpoint");
		return;
	}
	if (strpbrk(value, " \t") != NULL) {
		problem(ld, group, "listen", "'%s': one address only", value);
		return;
	}
	if (!gh_host_port_parse(value, &hp, &why)) {
		problem(ld, group, "listen", "bad listen address '%s': %s", value, why);
		return;
	}
	/* bind() takes addresses: a name could resolve to anything */
	if (strcmp(hp.host, "*") != 0 && !g_hostname_is_ip_address(hp.host)) {
		problem(ld, group, "listen",
			"bad listen address '%s': an IP address or '*' is needed, not a host name",
			value);
		gh_host_port_clear(&hp);
		return;
	}
	ld->cfg->metrics_listen = g_memdup2(&hp, sizeof hp);
}

/* ------------------------------------------------------------ links */

static void
check_links(Loader *ld)
{
	GhConfig *cfg = ld->cfg;

	if (cfg->listeners->len == 0)
		problem(ld, NULL, NULL, "no [listener NAME] group: nothing to listen on");
	for (guint i = 0; i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		g_autofree char *group = g_strconcat("listener ", lc->name, NULL);
		const GhBackendConfig *bc;

		for (guint j = 0; lc->auth[j] != NULL; j++) {
			if (gh_config_auth(cfg, lc->auth[j]) == NULL)
				problem(ld, group, "auth",
					"unknown auth group '%s' (there is no [auth %s])",
					lc->auth[j], lc->auth[j]);
		}
		bc = gh_config_backend(cfg, lc->backend);
		if (lc->backend != NULL && bc == NULL) {
			problem(ld, group, "backend",
				"unknown backend '%s' (there is no [backend %s])", lc->backend,
				lc->backend);
		} else if (bc != NULL && !g_hash_table_contains(ld->bad_protocol, group)) {
			g_autofree char *bgroup = g_strconcat("backend ", bc->name, NULL);
			if (!g_hash_table_contains(ld->bad_protocol, bgroup) &&
			    bc->protocol != lc->protocol)
				problem(ld, group, "backend",
					"backend '%s' speaks %s, listener speaks %s", bc->name,
					gh_protocol_to_string(bc->protocol),
					gh_protocol_to_string(lc->protocol));
		}
		if (lc->proxy_protocol && cfg->proxy_trusted_networks->len == 0)
			problem(ld, group, "proxy_protocol",
				"yes needs [gatehouse] proxy_trusted_networks: the load balancers "
				"whose PROXY headers are believed");
		if (lc->tls != GH_TLS_NONE && cfg->tls.certificates == NULL)
			problem(ld, group, "tls", "tls = %s needs a certificate and key in [tls]",
				gh_tls_mode_to_string(lc->tls));
	}
}

/* ------------------------------------------------------------ entry point */

typedef struct {
	guint line; /* G_MAXUINT: no line */
	guint order;
	char *msg;
} NumberedProblem;

static int
numbered_problem_cmp(const void *a, const void *b)
{
	const NumberedProblem *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Problems are found group by group and then link by link; an admin reads
 * them best in the order of the file.  Sort problems[from..] by line, keeping
 * the order of those on one line (and putting those without a line last). */
static void
sort_problems(const char *path, GPtrArray *problems, guint from)
{
	guint n = problems->len - from;
	gsize plen = strlen(path);
	g_autofree NumberedProblem *v = g_new0(NumberedProblem, n + 1);

	for (guint i = 0; i < n; i++) {
		const char *msg = g_ptr_array_index(problems, from + i);
		v[i].msg = g_ptr_array_index(problems, from + i);
		v[i].order = i;
		v[i].line = G_MAXUINT;
		if (strncmp(msg, path, plen) == 0 && msg[plen] == ':' &&
		    g_ascii_isdigit(msg[plen + 1]))
			v[i].line =
			    (guint)MIN(g_ascii_strtoull(msg + plen + 1, NULL, 10), G_MAXUINT);
	}
	qsort(v, n, sizeof *v, numbered_problem_cmp);
	for (guint i = 0; i < n; i++)
		problems->pdata[from + i] = v[i].msg;
}

static const char *
group_name_after(const char *group, const char *kind)
{
	gsize n = strlen(kind);

	if (strncmp(group, kind, n) != 0)
		return NULL;
	if (group[n] == '\0')
		return ""; /* "[listener]" */
	if (group[n] != ' ')
		return NULL; /* "[listeners]" is another group */
	return group + n + 1;
}

static void
parse_group(Loader *ld, const char *group)
{
	static const struct {
		const char *kind;
		void (*parse)(Loader *ld, const char *group, const char *name);
	} named[] = {
	    {"listener", parse_listener},
	    {"auth", parse_auth},
	    {"backend", parse_backend},
	};

	if (strcmp(group, "gatehouse") == 0) {
		parse_gatehouse(ld, group);
		return;
	}
	if (strcmp(group, "tls") == 0) {
		parse_tls(ld, group);
		return;
	}
	if (strcmp(group, "metrics") == 0) {
		parse_metrics(ld, group);
		return;
	}
	for (guint i = 0; i < G_N_ELEMENTS(named); i++) {
		const char *name = group_name_after(group, named[i].kind);
		if (name == NULL)
			continue;
		if (!valid_name(name)) {
			problem(ld, group, NULL,
				"bad %s name '%s': write [%s NAME] with a NAME of letters, digits, "
				"'_', '.' and '-'",
				named[i].kind, name, named[i].kind);
			return;
		}
		named[i].parse(ld, group, name);
		return;
	}
	problem(ld, group, NULL,
		"unknown group (known: [gatehouse], [tls], [listener NAME], [auth NAME], "
		"[backend NAME], [metrics])");
}

GhConfig *
gh_config_load(const char *path, GPtrArray *problems)
{
	g_autoptr(GPtrArray) own_problems = NULL;
	g_autoptr(GhConfig) cfg = NULL;
	g_autoptr(GHashTable) bad_protocol = NULL;
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) groups = NULL;
	Loader ld = {0};
	guint first_problem;

	g_return_val_if_fail(path != NULL, NULL);

	if (problems == NULL)
		problems = own_problems = g_ptr_array_new_with_free_func(g_free);
	first_problem = problems->len;
	cfg = config_new(path);
	cfg->kf = gh_key_file_load(path, &error);
	if (cfg->kf == NULL) {
		/* the key file reports all its structural problems at once,
		 * one a line */
		g_auto(GStrv) lines = g_strsplit(error->message, "\n", -1);
		for (guint i = 0; lines[i] != NULL; i++)
			g_ptr_array_add(problems, g_strdup(lines[i]));
		return NULL;
	}

	bad_protocol = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	ld.cfg = cfg;
	ld.problems = problems;
	ld.bad_protocol = bad_protocol;

	groups = g_key_file_get_groups(cfg->kf, NULL);
	for (guint i = 0; groups[i] != NULL; i++)
		parse_group(&ld, groups[i]);
	if (!g_key_file_has_group(cfg->kf, "gatehouse"))
		parse_trusted_networks(&ld, NULL);
	check_links(&ld);

	if (ld.n_problems > 0) {
		sort_problems(path, problems, first_problem);
		return NULL;
	}
	if (cfg->workers == 0)
		cfg->workers = g_get_num_processors();
	return g_steal_pointer(&cfg);
}
