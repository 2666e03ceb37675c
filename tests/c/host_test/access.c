/*
 * access.c: the C host test's admission case: a C auth hook and a C rate limiter.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: admission of sessions through a C auth hook and a C rate limiter.
 * ------------------------------------------------------------------------------------------- */

typedef struct Access {
    atomic_int authenticate_calls;
    atomic_int authorize_calls;
    atomic_int allow_calls;
    atomic_int wait_calls;
    atomic_uint last_wait_ms;
    char last_operation[64];
    char last_metadata[256];
} Access;

/* Tokens "token-for-<user>" are valid; a few others misbehave on purpose. */
static VbStatus access_authenticate(void *user_data, const char *token, const char *metadata_json,
                                    char *user_id_out, size_t user_id_capacity)
{
    Access *access = user_data;
    atomic_fetch_add(&access->authenticate_calls, 1);
    snprintf(access->last_metadata, sizeof access->last_metadata, "%s", metadata_json);
    if (strcmp(token, "overflow") == 0) { /* no NUL anywhere in the buffer */
        memset(user_id_out, 'x', user_id_capacity);
        return VB_OK;
    }
    if (strcmp(token, "offline") == 0)
        return VB_ERR_CONNECTION_FAILED;
    if (strcmp(token, "bogus-status") == 0)
        return (VbStatus)77;
    if (strncmp(token, "token-for-", 10) != 0)
        return VB_ERR_UNAUTHORIZED;
    snprintf(user_id_out, user_id_capacity, "%s", token + 10);
    return VB_OK;
}

static VbStatus access_authorize(void *user_data, const char *user_id, const char *operation)
{
    Access *access = user_data;
    atomic_fetch_add(&access->authorize_calls, 1);
    snprintf(access->last_operation, sizeof access->last_operation, "%s", operation);
    return strcmp(user_id, "eve") == 0 ? VB_ERR_UNAUTHORIZED : VB_OK;
}

static VbStatus access_allow(void *user_data, const char *key)
{
    Access *access = user_data;
    atomic_fetch_add(&access->allow_calls, 1);
    return strcmp(key, "blocked") == 0 ? VB_ERR_RATE_LIMITED : VB_OK;
}

static VbStatus access_wait(void *user_data, const char *key, uint32_t timeout_ms)
{
    Access *access = user_data;
    atomic_fetch_add(&access->wait_calls, 1);
    atomic_store(&access->last_wait_ms, timeout_ms);
    return strcmp(key, "blocked") == 0 ? VB_ERR_RATE_LIMITED : VB_OK;
}

/* vb_session_create with `json` fails with `want`, writes nothing and creates nothing. */
static void check_refused(const char *file, int line, VbBackend *backend, const char *json,
                          VbStatus want, const char *needle)
{
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbSession *out = SENTINEL;
    uint32_t before = vb_backend_active_sessions(backend);
    char expr[512];
    snprintf(expr, sizeof expr, "vb_session_create(%.400s)", json);
    VbStatus got = vb_session_create(backend, json, &callbacks, &out);
    if (status_is(file, line, expr, got, want) && strstr(g_last_message, needle) == NULL) {
        snprintf(expr, sizeof expr, "message \"%.300s\" names \"%s\"", g_last_message, needle);
        fail_at(file, line, expr);
    }
    if (out != SENTINEL)
        fail_at(file, line, "*out_session was written by a refused vb_session_create");
    if (vb_backend_active_sessions(backend) != before)
        fail_at(file, line, "a refused session was counted");
    agent_free(agent);
}
#define CHECK_REFUSED(backend, json, want, needle)                                             \
    check_refused(__FILE__, __LINE__, (backend), (json), (want), (needle))

void case_access(void)
{
    static Access access; /* valid until the backend is freed */
    memset(&access, 0, sizeof access);
    VbBackend *backend = NULL;
    VbSession *carol = NULL, *alice = NULL;
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbAuthHook hook = {&access, access_authenticate, access_authorize};
    VbRateLimiter limiter = {&access, access_allow, access_wait};

    REQUIRE_STATUS(vb_backend_create("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                                     "\"tts_provider\":\"test-tone-tts\",\"auth\":{\"required\":true}}",
                                     &backend),
                   VB_OK);
    /* auth.required with no hook to check tokens cannot start. */
    CHECK_STATUS(vb_backend_start(backend), VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("auth.required");

    CHECK_STATUS(vb_backend_set_auth_hook(NULL, &hook), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_set_auth_hook(backend, NULL), VB_ERR_INVALID_ARGUMENT);
    VbAuthHook half = {&access, access_authenticate, NULL};
    CHECK_STATUS(vb_backend_set_auth_hook(backend, &half), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("authorize");
    VbRateLimiter no_allow = {&access, NULL, access_wait};
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, &no_allow), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("allow");
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, NULL), VB_ERR_INVALID_ARGUMENT);

    REQUIRE_STATUS(vb_backend_set_auth_hook(backend, &hook), VB_OK);
    REQUIRE_STATUS(vb_backend_set_rate_limiter(backend, &limiter), VB_OK);
    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    CHECK_STATUS(vb_backend_set_auth_hook(backend, &hook), VB_ERR_INVALID_STATE);
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, &limiter), VB_ERR_INVALID_STATE);

    /* Refusals: status, reason, nothing created, the token never in the message. */
    CHECK_REFUSED(backend, "{}", VB_ERR_UNAUTHORIZED, "no auth_token");
    CHECK_REFUSED(backend, "{\"auth_token\":\"forged-secret-token\"}", VB_ERR_UNAUTHORIZED,
                  "refused the token");
    CHECK(strstr(g_last_message, "forged-secret-token") == NULL);
    CHECK_REFUSED(backend, "{\"auth_token\":\"overflow\"}", VB_ERR_UNAUTHORIZED,
                  "not NUL-terminated");
    CHECK_REFUSED(backend, "{\"auth_token\":\"offline\"}", VB_ERR_CONNECTION_FAILED,
                  "authenticate failed");
    CHECK_REFUSED(backend, "{\"auth_token\":\"bogus-status\"}", VB_ERR_UNAUTHORIZED,
                  "no VbStatus");
    CHECK_REFUSED(backend, "{\"auth_token\":\"token-for-eve\"}", VB_ERR_UNAUTHORIZED,
                  "'eve'");
    CHECK(strcmp(access.last_operation, "session.create") == 0);
    CHECK_REFUSED(backend, "{\"user_id\":\"bob\",\"auth_token\":\"token-for-carol\"}",
                  VB_ERR_UNAUTHORIZED, "'bob'");
    CHECK_REFUSED(backend, "{\"auth_token\":\"token-for-blocked\"}", VB_ERR_RATE_LIMITED,
                  "'blocked'");
    /* Only the authorized session reached the limiter. */
    CHECK(atomic_load(&access.allow_calls) == 1);
    CHECK(vb_backend_active_sessions(backend) == 0);

    /* Admitted: the hook saw the metadata; a waiting session used the limiter's wait. */
    CHECK_STATUS(vb_session_create(backend,
                                   "{\"auth_token\":\"token-for-carol\",\"metadata\":{\"app\":\"c\"}}",
                                   &callbacks, &carol),
                 VB_OK);
    CHECK(strstr(access.last_metadata, "\"app\":\"c\"") != NULL);
    CHECK(strcmp(access.last_operation, "session.create") == 0);
    CHECK_STATUS(vb_session_create(backend,
                                   "{\"auth_token\":\"token-for-alice\",\"admission_wait_ms\":250}",
                                   &callbacks, &alice),
                 VB_OK);
    CHECK(atomic_load(&access.wait_calls) == 1);
    CHECK(atomic_load(&access.last_wait_ms) == 250);
    CHECK(vb_backend_active_sessions(backend) == 2);
    CHECK_STATUS(vb_session_start(carol), VB_OK);

done:
    vb_session_free(carol);
    vb_session_free(alice);
    vb_backend_free(backend);
    agent_free(agent);
}
