/*
 * tls.c: GnuTLS credentials per configuration generation (see tls.h).
 *
 * Invariants: everything in a GhTls is immutable after gh_tls_new and safe
 * to share between threads (GnuTLS credentials and priority caches are);
 * sessions made from it hold a reference through their owner, never
 * through GnuTLS.
 */
#include "gh-build.h"

#include "net/tls.h"

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <string.h>

struct _GhTls {
	gint ref_count;
	gnutls_certificate_credentials_t server_creds; /* NULL without [tls] certificates */
	gnutls_priority_t priorities;
	gnutls_datum_t ticket_key;
	GHashTable *backend_creds; /* backend name -> gnutls_certificate_credentials_t */
};

static void
free_creds(gpointer p)
{
	gnutls_certificate_free_credentials(p);
}

GhTls *
gh_tls_ref(GhTls *tls)
{
	g_atomic_int_inc(&tls->ref_count);
	return tls;
}

void
gh_tls_unref(GhTls *tls)
{
	if (tls == NULL || !g_atomic_int_dec_and_test(&tls->ref_count))
		return;
	if (tls->server_creds != NULL)
		gnutls_certificate_free_credentials(tls->server_creds);
	if (tls->priorities != NULL)
		gnutls_priority_deinit(tls->priorities);
	if (tls->ticket_key.data != NULL) {
		explicit_bzero(tls->ticket_key.data, tls->ticket_key.size);
		gnutls_free(tls->ticket_key.data);
	}
	g_hash_table_unref(tls->backend_creds);
	g_free(tls);
}

gboolean
gh_tls_has_server(const GhTls *tls)
{
	return tls != NULL && tls->server_creds != NULL;
}

static void problem(GPtrArray *problems, const char *format, ...) G_GNUC_PRINTF(2, 3);

static void
problem(GPtrArray *problems, const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	g_ptr_array_add(problems, g_strdup_vprintf(format, ap));
	va_end(ap);
}

GhTls *
gh_tls_new(const GhConfig *cfg, GPtrArray *problems)
{
	g_autoptr(GhTls) tls = g_new0(GhTls, 1);
	guint before = problems->len;
	const char *err_pos = NULL;
	int rc;

	tls->ref_count = 1;
	tls->backend_creds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_creds);

	rc = gnutls_priority_init2(&tls->priorities, cfg->tls.priorities, &err_pos, 0);
	if (rc < 0)
		problem(problems, "%s: [tls] priorities: %s (at \"%s\")", cfg->path,
			gnutls_strerror(rc), err_pos != NULL ? err_pos : "");

	if (cfg->tls.certificates != NULL) {
		gnutls_certificate_allocate_credentials(&tls->server_creds);
		for (guint i = 0; cfg->tls.certificates[i] != NULL; i++) {
			/* several pairs: GnuTLS picks the one whose names match the
			 * client's SNI, else the first */
			rc = gnutls_certificate_set_x509_key_file(
			    tls->server_creds, cfg->tls.certificates[i], cfg->tls.keys[i],
			    GNUTLS_X509_FMT_PEM);
			if (rc < 0)
				problem(problems, "%s: [tls] certificate %s with key %s: %s",
					cfg->path, cfg->tls.certificates[i], cfg->tls.keys[i],
					gnutls_strerror(rc));
		}
		gnutls_session_ticket_key_generate(&tls->ticket_key);
	}

	for (guint i = 0; i < cfg->backends->len; i++) {
		const GhBackendConfig *bc = g_ptr_array_index(cfg->backends, i);
		gnutls_certificate_credentials_t creds;
		if (bc->tls == GH_TLS_NONE)
			continue;
		gnutls_certificate_allocate_credentials(&creds);
		if (bc->ca_file != NULL)
			rc = gnutls_certificate_set_x509_trust_file(creds, bc->ca_file,
								    GNUTLS_X509_FMT_PEM);
		else
			rc = gnutls_certificate_set_x509_system_trust(creds);
		if (rc < 0)
			problem(problems, "%s: [backend %s] ca_file: %s: %s", cfg->path, bc->name,
				bc->ca_file != NULL ? bc->ca_file : "system trust store",
				gnutls_strerror(rc));
		else if (rc == 0 && bc->verify)
			problem(problems, "%s: [backend %s] ca_file: %s holds no certificate",
				cfg->path, bc->name,
				bc->ca_file != NULL ? bc->ca_file : "the system trust store");
		g_hash_table_insert(tls->backend_creds, g_strdup(bc->name), creds);
	}
	if (problems->len > before)
		return NULL;
	return g_steal_pointer(&tls);
}

gnutls_session_t
gh_tls_server_session(GhTls *tls, int fd)
{
	gnutls_session_t s = NULL;
	gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	gnutls_priority_set(s, tls->priorities);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, tls->server_creds);
	/* resumed handshakes skip the expensive part */
	gnutls_session_ticket_enable_server(s, &tls->ticket_key);
	gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
	gnutls_transport_set_int(s, fd);
	return s;
}

gnutls_session_t
gh_tls_client_session(GhTls *tls, const GhBackendConfig *bc, const char *host, int fd)
{
	gnutls_session_t s = NULL;
	gnutls_certificate_credentials_t creds = g_hash_table_lookup(tls->backend_creds, bc->name);
	gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	gnutls_priority_set(s, tls->priorities);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds);
	/* SNI is for names, not addresses (RFC 6066 3) */
	if (!g_hostname_is_ip_address(host))
		gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host));
	/* the certificate is checked once the handshake is done:
	 * gh_tls_verify_peer */
	gnutls_transport_set_int(s, fd);
	return s;
}

gboolean
gh_tls_verify_peer(gnutls_session_t session, const char *host, char **error)
{
	guint8 raw[16];
	unsigned status = 0;
	int rc;
	gnutls_typed_vdata_st data[2] = {
	    {.type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (void *)GNUTLS_KP_TLS_WWW_SERVER},
	};

	/* an address must be among the certificate's IP SANs, a name among
	 * its DNS names (RFC 6125) */
	if (inet_pton(AF_INET, host, raw) == 1) {
		data[1] =
		    (gnutls_typed_vdata_st){.type = GNUTLS_DT_IP_ADDRESS, .data = raw, .size = 4};
	} else if (inet_pton(AF_INET6, host, raw) == 1) {
		data[1] =
		    (gnutls_typed_vdata_st){.type = GNUTLS_DT_IP_ADDRESS, .data = raw, .size = 16};
	} else {
		data[1] =
		    (gnutls_typed_vdata_st){.type = GNUTLS_DT_DNS_HOSTNAME, .data = (void *)host};
	}
	rc = gnutls_certificate_verify_peers(session, data, 2, &status);
	if (rc < 0) {
		*error = g_strdup_printf("certificate check failed: %s", gnutls_strerror(rc));
		return FALSE;
	}
	if (status != 0) {
		gnutls_datum_t text = {NULL, 0};
		gnutls_certificate_verification_status_print(
		    status, gnutls_certificate_type_get(session), &text, 0);
		*error = g_strdup_printf("certificate of %s not trusted: %s", host,
					 text.data != NULL ? (char *)text.data : "?");
		gnutls_free(text.data);
		return FALSE;
	}
	return TRUE;
}

char *
gh_tls_describe(gnutls_session_t session)
{
	if (session == NULL)
		return g_strdup("no");
	return g_strdup_printf("%s/%s",
			       gnutls_protocol_get_name(gnutls_protocol_get_version(session)),
			       gnutls_cipher_get_name(gnutls_cipher_get(session)));
}
