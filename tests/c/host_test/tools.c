/*
 * tools.c: the C host test's case for the built-in agent's tools: vb_backend_add_tool and
 * vb_tool_result_write with bad input, and — when VB_TEST_LLM_URL names an OpenAI-compatible
 * server (tests/c_abi.rs starts llama.cpp's for it) — a session without on_transcript whose
 * answer calls the host's C tool.
 */
#include "host_test.h"

typedef struct WeatherTool {
    atomic_int calls;
    char arguments[TEXT_CAP];
} WeatherTool;

static VbStatus weather(void *user_data, const char *arguments_json, VbToolResult *result)
{
    WeatherTool *tool = user_data;
    if (atomic_fetch_add(&tool->calls, 1) == 0)
        snprintf(tool->arguments, sizeof tool->arguments, "%s", arguments_json);
    return vb_tool_result_write(result, "{\"forecast\": \"sunny and 21 degrees\"}");
}

static bool got_response(const Host *h)
{
    return h->counts[VB_EVENT_AGENT_RESPONSE] >= 1 || h->counts[VB_EVENT_ERROR] >= 1;
}

void case_tools(void)
{
    Host h = {0};
    WeatherTool state = {0};
    VbBackend *backend = NULL;
    const char *url = getenv("VB_TEST_LLM_URL");
    char json[1024];
    snprintf(json, sizeof json,
             "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
             "\"tts_provider\":\"test-tone-tts\",\"persistence\":{\"path\":\"\"},"
             "\"retry\":{\"max_attempts\":1},"
             "\"agent\":{\"provider\":\"openai\",\"base_url\":\"%s\",\"temperature\":0,"
             "\"max_tokens\":40,\"tool_choice\":\"get_weather\",\"filler\":\"\"}}",
             url != NULL ? url : "http://127.0.0.1:9");
    REQUIRE_STATUS(vb_backend_create(json, &backend), VB_OK);

    VbTool tool = {
        .name = "get_weather",
        .description = "The weather forecast for a city.",
        .parameters_json = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                           "\"required\":[\"city\"]}",
        .call = weather,
        .user_data = &state,
    };
    CHECK_STATUS(vb_backend_add_tool(NULL, &tool), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_add_tool(backend, NULL), VB_ERR_INVALID_ARGUMENT);
    VbTool bad = tool;
    bad.name = "get weather";
    CHECK_STATUS(vb_backend_add_tool(backend, &bad), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("1-64 characters");
    bad = tool;
    bad.parameters_json = "{\"type\":";
    CHECK_STATUS(vb_backend_add_tool(backend, &bad), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("tool->parameters_json is not JSON");
    bad = tool;
    bad.parameters_json = "[]";
    CHECK_STATUS(vb_backend_add_tool(backend, &bad), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("must be a JSON schema object");
    bad = tool;
    bad.call = NULL;
    CHECK_STATUS(vb_backend_add_tool(backend, &bad), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("tool->call is NULL");
    bad = tool;
    bad.description = NULL;
    CHECK_STATUS(vb_backend_add_tool(backend, &bad), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_tool_result_write(NULL, "x"), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_add_tool(backend, &tool), VB_OK);
    CHECK_STATUS(vb_backend_add_tool(backend, &tool), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("already added");
    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    CHECK_STATUS(vb_backend_add_tool(backend, &tool), VB_ERR_INVALID_STATE);
    if (url == NULL) {
        printf("    VB_TEST_LLM_URL unset: no tool call (tests/c_abi.rs runs this case with a "
               "server)\n");
        goto done;
    }

    /* No on_transcript: the built-in agent answers, calling the C tool. */
    h.in_rate = h.out_rate = 16000;
    h.capture_cap = 16000 * 3;
    h.capture = calloc(h.capture_cap, sizeof *h.capture);
    REQUIRE_STATUS(vb_session_create(backend, "{}", NULL, &h.session), VB_OK);
    REQUIRE_STATUS(vb_session_start(h.session), VB_OK);
    CHECK(say_turn(&h, 150.0, 900));
    CHECK(wait_until(&h, got_response, 60.0));
    printf("    tool arguments: %s, reply: \"%s\"\n", state.arguments, h.responses[0]);
    CHECK(h.counts[VB_EVENT_ERROR] == 0);
    CHECK(atomic_load(&state.calls) == 1);
    CHECK(strstr(state.arguments, "\"city\"") != NULL);
    CHECK(strlen(h.responses[0]) > 0);

done:
    if (h.session != NULL) {
        CHECK_STATUS(vb_session_stop(h.session), VB_OK);
        vb_session_free(h.session);
    }
    free(h.capture);
    if (backend != NULL)
        vb_backend_free(backend);
}
