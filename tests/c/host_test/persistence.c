/*
 * persistence.c: the C host test's persistence case: a session recovered after kill -9.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: session persistence. A child process (this program again, with VB_PERSISTENCE_CHILD
 * set) holds a turn on a store file, opens a second session that says nothing, and is killed
 * with SIGKILL; a backend on the same file recovers both, discards the idle one, resumes the
 * other with its history and goes on; its stop deletes the record.
 * ------------------------------------------------------------------------------------------- */

#define PERSIST_PATH "persistence-case/sessions.redb"
static const char *const PERSIST_BACKEND_JSON =
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\","
    "\"persistence\":{\"path\":\"" PERSIST_PATH "\"}}";

/* Turns in a vb_session_history array. */
static int history_turns(const char *json)
{
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"transcript\":")) != NULL; p++)
        n++;
    return n;
}

/* The child: one turn, a second session without one, flushed to disk, their session ids on
 * stdout, then it waits to be killed. */
static void persistence_child(void)
{
    Host h = {0}, idle = {0};
    Agent *agent = agent_new();
    agent->chunks[0] = "Noted.";
    VbBackend *backend = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(backend != NULL);
    REQUIRE(open_host(&h, backend, 16000, agent));
    CHECK(say_turn(&h, 150.0, 800));
    REQUIRE(wait_until(&h, reply_played_out, 30.0));
    REQUIRE(open_host(&idle, backend, 16000, NULL));
    REQUIRE_STATUS(vb_backend_flush_store(backend), VB_OK);
    char id[128], idle_id[128];
    size_t needed = 0;
    REQUIRE_STATUS(vb_session_id(h.session, id, sizeof id, &needed), VB_OK);
    REQUIRE_STATUS(vb_session_id(idle.session, idle_id, sizeof idle_id, &needed), VB_OK);
    printf("persisted sessions %s %s\n", id, idle_id);
    fflush(stdout);
    sleep_s(60.0); /* the parent kills it long before */
done:
    close_host(&idle);
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
}

void case_persistence(void)
{
    if (getenv("VB_PERSISTENCE_CHILD") != NULL) {
        persistence_child();
        return;
    }
    VbBackend *backend = NULL, *later = NULL;
    VbSession *session = NULL, *out = SENTINEL;
    Agent *agent = agent_new();
    agent->chunks[0] = "Noted.";
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    Host h = {0};
    FILE *from_child = NULL;
    char id[128] = "", idle_id[128] = "", line[512], buf[4096], expected[512];
    size_t needed = 0;
    int fds[2], status = 0;
    pid_t pid = -1;

    unlink(PERSIST_PATH);
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    setenv("VB_PERSISTENCE_CHILD", "1", 1);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "host_test", "persistence", (char *)NULL);
        _exit(127);
    }
    unsetenv("VB_PERSISTENCE_CHILD");
    close(fds[1]);
    REQUIRE(pid > 0);
    from_child = fdopen(fds[0], "r");
    while (id[0] == '\0' && fgets(line, sizeof line, from_child) != NULL) {
        printf("    child: %s", line);
        if (sscanf(line, "persisted sessions %127s %127s", id, idle_id) != 2)
            id[0] = '\0';
    }
    REQUIRE(id[0] != '\0' && idle_id[0] != '\0');
    /* kill -9 while its session is active. */
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pid = -1;

    backend = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(backend != NULL);
    /* vb_backend_recovered_sessions: the buffer rules, then both sessions, oldest first. */
    snprintf(expected, sizeof expected,
             "[{\"session_id\":\"%s\",\"user_id\":\"\",\"turns\":1},"
             "{\"session_id\":\"%s\",\"user_id\":\"\",\"turns\":0}]",
             id, idle_id);
    memset(buf, 'X', sizeof buf);
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, 3, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen(expected) + 1);
    CHECK(buf[0] == 'X' && buf[2] == 'X');
    needed = 0;
    CHECK_STATUS(vb_backend_recovered_sessions(backend, NULL, 0, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen(expected) + 1);
    CHECK_STATUS(vb_backend_recovered_sessions(NULL, buf, sizeof buf, &needed),
                 VB_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, expected) == 0);

    /* vb_backend_discard_recovered: bad arguments and unknown ids change nothing; the idle
     * session is forgotten (a later backend on the file does not find it either, see below). */
    CHECK_STATUS(vb_backend_discard_recovered(NULL, idle_id), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_discard_recovered(backend, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_discard_recovered(backend, "sess-\xff"), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("UTF-8");
    CHECK_STATUS(vb_backend_discard_recovered(backend, "sess-nobody"), VB_ERR_NOT_FOUND);
    CHECK_MESSAGE_HAS("sess-nobody");
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, expected) == 0);
    CHECK_STATUS(vb_backend_discard_recovered(backend, idle_id), VB_OK);
    CHECK_STATUS(vb_backend_discard_recovered(backend, idle_id), VB_ERR_NOT_FOUND);
    CHECK_STATUS(vb_session_resume(backend, idle_id, &callbacks, &out), VB_ERR_NOT_FOUND);
    CHECK(out == SENTINEL);
    snprintf(expected, sizeof expected, "[{\"session_id\":\"%s\",\"user_id\":\"\",\"turns\":1}]", id);
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, expected) == 0);

    /* vb_session_resume: bad arguments and unknown ids leave *out_session alone; a refused
     * resume leaves the session recoverable. */
    CHECK_STATUS(vb_session_resume(NULL, id, &callbacks, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, NULL, &callbacks, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, id, &callbacks, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, "sess-nobody", &callbacks, &out), VB_ERR_NOT_FOUND);
    CHECK_MESSAGE_HAS("sess-nobody");
    CHECK_STATUS(vb_session_resume(backend, id, NULL, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("on_transcript");
    CHECK(out == SENTINEL);
    REQUIRE_STATUS(vb_session_resume(backend, id, &callbacks, &session), VB_OK);
    agent->session = session;
    CHECK_STATUS(vb_session_resume(backend, id, &callbacks, &out), VB_ERR_NOT_FOUND);
    CHECK(out == SENTINEL);
    CHECK_STATUS(vb_backend_discard_recovered(backend, id), VB_ERR_NOT_FOUND); /* resumed */
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, "[]") == 0);
    char resumed_id[128];
    CHECK_STATUS(vb_session_id(session, resumed_id, sizeof resumed_id, &needed), VB_OK);
    CHECK(strcmp(resumed_id, id) == 0);

    /* vb_session_history: the child's turn, with the buffer rules. */
    REQUIRE_STATUS(vb_session_history(session, buf, sizeof buf, &needed), VB_OK);
    printf("    history: %s\n", buf);
    CHECK(history_turns(buf) == 1);
    CHECK(strncmp(buf, "[{\"transcript\":\"pitch 150 hz for ", 33) == 0);
    CHECK(strstr(buf, "\"reply\":\"Noted.\",\"interrupted\":false}]") != NULL);
    size_t size = needed;
    CHECK(size == strlen(buf) + 1);
    memset(buf, 'X', sizeof buf);
    CHECK_STATUS(vb_session_history(session, buf, size - 1, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == size && buf[0] == 'X');
    CHECK_STATUS(vb_session_history(NULL, buf, sizeof buf, &needed), VB_ERR_INVALID_ARGUMENT);

    /* The conversation goes on: the next turn is appended. */
    h.session = session;
    session = NULL;
    h.in_rate = h.out_rate = 16000;
    h.capture_cap = 16000;
    h.capture = calloc(h.capture_cap, sizeof *h.capture);
    REQUIRE_STATUS(vb_session_start(h.session), VB_OK);
    CHECK(say_turn(&h, 220.0, 800));
    CHECK(wait_until(&h, reply_played_out, 30.0));
    REQUIRE_STATUS(vb_session_history(h.session, buf, sizeof buf, &needed), VB_OK);
    CHECK(history_turns(buf) == 2);
    CHECK(strstr(buf, "{\"transcript\":\"pitch 220 hz for ") != NULL);
    CHECK_STATUS(vb_backend_flush_store(backend), VB_OK);
    CHECK_STATUS(vb_backend_flush_store(NULL), VB_ERR_INVALID_ARGUMENT);

    /* Stopped: completed, so its record is gone; the idle one was discarded: a later backend
     * recovers nothing. */
    close_host(&h);
    vb_backend_free(backend);
    backend = NULL;
    later = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(later != NULL);
    CHECK_STATUS(vb_backend_recovered_sessions(later, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, "[]") == 0);

done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (from_child != NULL)
        fclose(from_child);
    vb_session_free(session);
    close_host(&h);
    vb_backend_free(later);
    vb_backend_free(backend);
    agent_free(agent);
    unlink(PERSIST_PATH);
}
