/* Chat templates: each real template in ../shared/models/templates maps to
 * its family (or to a clear "no template fits"), and each family writes the
 * exact prompt its documented format gives for system + user + assistant +
 * user with the generation prompt. */
#include "engine/text.h"
#include "test.h"

#include <dirent.h>
#include <libgen.h>

static const struct chat_message conv[] = {
    {"system", "You are terse."},
    {"user", "Hi there"},
    {"assistant", "Hello!"},
    {"user", "What is 2+2?"},
};

static void expect_format(enum chat_family f, const char *want)
{
    struct buf b = {0};
    struct thaw_err err = {0};
    int rc = chat_format(f, conv, ARRAY_LEN(conv), true, &b, &err);
    if (rc) fprintf(stderr, "  %s: %s\n", chat_family_name(f), err.msg);
    if (rc == 0 && strcmp(b.data, want) != 0)
        fprintf(stderr, "  %s gave:\n%s\n  want:\n%s\n", chat_family_name(f), b.data, want);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_EQ(b.data, want);
    buf_free(&b);
}

static void test_chatml(void)
{
    expect_format(CHAT_CHATML, "<|im_start|>system\nYou are terse.<|im_end|>\n"
                               "<|im_start|>user\nHi there<|im_end|>\n"
                               "<|im_start|>assistant\nHello!<|im_end|>\n"
                               "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                               "<|im_start|>assistant\n");
}

static void test_llama3(void)
{
    expect_format(CHAT_LLAMA3,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_llama2(void)
{
    /* <s> of the first turn is the tokenizer's BOS */
    expect_format(CHAT_LLAMA2, "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] "
                               "Hello! </s><s>[INST] What is 2+2? [/INST]");
}

static void test_mistral(void)
{
    /* v1: the system prompt joins the first user turn */
    expect_format(CHAT_MISTRAL, " [INST] You are terse.\n\nHi there [/INST] Hello!</s>"
                                " [INST] What is 2+2? [/INST]");
    /* v3-tekken (Mistral Nemo): no spaces, the system prompt joins the last turn */
    expect_format(CHAT_MISTRAL_V3, "[INST]Hi there[/INST]Hello!</s>"
                                   "[INST]You are terse.\n\nWhat is 2+2?[/INST]");
}

static void test_zephyr_phi3_gemma(void)
{
    expect_format(CHAT_ZEPHYR, "<|system|>\nYou are terse.</s>\n<|user|>\nHi there</s>\n"
                               "<|assistant|>\nHello!</s>\n<|user|>\nWhat is 2+2?</s>\n"
                               "<|assistant|>\n");
    expect_format(CHAT_PHI3, "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n"
                             "<|assistant|>\nHello!<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n"
                             "<|assistant|>\n");
    /* Gemma has no system role: it opens the first user turn */
    expect_format(CHAT_GEMMA, "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n"
                              "<start_of_turn>model\nHello!<end_of_turn>\n"
                              "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                              "<start_of_turn>model\n");
}

static void test_deepseek_command_r(void)
{
#define U "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define A "<\xef\xbd\x9c\x41ssistant\xef\xbd\x9c>"
#define E "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
    expect_format(CHAT_DEEPSEEK3, "You are terse." U "Hi there" A "Hello!" E U "What is 2+2?" A);
    expect_format(CHAT_DEEPSEEK_R1,
                  "You are terse." U "Hi there" A "Hello!" E U "What is 2+2?" A "<think>\n");
    expect_format(CHAT_COMMAND_R,
                  "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are terse.<|END_OF_TURN_TOKEN|>"
                  "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>"
                  "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello!<|END_OF_TURN_TOKEN|>"
                  "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>What is 2+2?<|END_OF_TURN_TOKEN|>"
                  "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
}

static void test_no_generation_prompt_and_errors(void)
{
    struct buf b = {0};
    struct thaw_err err = {0};
    ASSERT_EQ(chat_format(CHAT_CHATML, conv, 2, false, &b, &err), 0);
    ASSERT_STR_EQ(b.data, "<|im_start|>system\nYou are terse.<|im_end|>\n"
                          "<|im_start|>user\nHi there<|im_end|>\n");
    const struct chat_message bad[] = {{"tool", "x"}};
    ASSERT_EQ(chat_format(CHAT_CHATML, bad, 1, true, &b, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "role");
    const struct chat_message nul[] = {{"user", NULL}};
    ASSERT_EQ(chat_format(CHAT_LLAMA3, nul, 1, true, &b, &err), THAW_EINVAL);
    ASSERT_EQ(chat_format(CHAT_NONE, conv, 1, true, &b, &err), THAW_EINVAL);
    ASSERT_EQ(chat_format((enum chat_family)999, conv, 1, true, &b, &err), THAW_EINVAL);
    buf_free(&b);
}

static void test_override_by_name(void)
{
    enum chat_family f = CHAT_NONE;
    struct thaw_err err = {0};
    for (int i = CHAT_CHATML; i <= CHAT_COMMAND_R; i++) {
        ASSERT_EQ(chat_family_from_name(chat_family_name((enum chat_family)i), &f, &err), 0);
        ASSERT_EQ(f, i);
    }
    ASSERT_EQ(chat_family_from_name("jinja", &f, &err), THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "chatml");
    ASSERT_EQ(chat_family_from_name(NULL, &f, &err), THAW_ENOTFOUND);
    ASSERT_STR_EQ(chat_family_name((enum chat_family) - 1), "none");
}

static int detect(const char *tmpl, enum chat_family *f, struct thaw_err *err)
{
    return chat_family_detect(tmpl, tmpl ? strlen(tmpl) : 0, f, err);
}

/* Short templates in the style of families with no file in the shared set. */
static void test_detect_inline(void)
{
    enum chat_family f;
    struct thaw_err err = {0};
    ASSERT_EQ(detect("{{ '<|user|>\\n' + message['content'] + eos_token }}", &f, &err), 0);
    ASSERT_EQ(f, CHAT_ZEPHYR);
    ASSERT_EQ(detect("[INST] <<SYS>>\\n' + system_message", &f, &err), 0);
    ASSERT_EQ(f, CHAT_LLAMA2);
    ASSERT_EQ(detect("{{ ' [INST] ' + system_message + message['content'] }}", &f, &err), 0);
    ASSERT_EQ(f, CHAT_MISTRAL);
    /* no <<SYS>> and no leading space: llama2 turns, as llama.cpp decides */
    ASSERT_EQ(detect("{{ '[INST] ' + message['content'] + ' [/INST]' }}", &f, &err), 0);
    ASSERT_EQ(f, CHAT_LLAMA2);
    ASSERT_EQ(detect("{{'[INST]' + m}}{{'[/INST]'}}", &f, &err), 0);
    ASSERT_EQ(f, CHAT_LLAMA2);
    ASSERT_EQ(detect("[SYSTEM_PROMPT][INST]", &f, &err), THAW_ENOTFOUND);
    ASSERT_EQ(detect("{% for m in messages %}{{ m.content }}{% endfor %}", &f, &err),
              THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "no built-in chat template fits");
    ASSERT_EQ(f, CHAT_NONE);
    ASSERT_EQ(detect(NULL, &f, &err), THAW_ENOTFOUND);
}

static const struct {
    const char *file;
    const char *family; /* "none": no built-in format fits */
} real_templates[] = {
    {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", "command-r"},
    {"CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", "none"},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "chatml"},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "chatml"},
    {"Qwen-Qwen2.5-7B-Instruct.jinja", "chatml"},
    {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "deepseek-r1"},
    {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek-r1"},
    {"fireworks-ai-llama-3-firefunction-v2.jinja", "llama3"},
    {"google-gemma-2-2b-it.jinja", "gemma"},
    {"llama-cpp-deepseek-r1.jinja", "deepseek-r1"},
    {"meetkai-functionary-medium-v3.1.jinja", "llama3"},
    {"meetkai-functionary-medium-v3.2.jinja", "none"},
    {"meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"},
    {"meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3"},
    {"meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3"},
    {"microsoft-Phi-3.5-mini-instruct.jinja", "phi3"},
    {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral-v3-tekken"},
};

static char templates_dir[1100];

static bool find_templates(void)
{
    const char *src = getenv("THAW_SOURCE_DIR");
    char here[1024];
    if (src)
        snprintf(templates_dir, sizeof(templates_dir), "%s/../shared/models/templates", src);
    else {
        str_copy(here, __FILE__, sizeof(here));
        snprintf(templates_dir, sizeof(templates_dir), "%s/../../../shared/models/templates",
                 dirname(here));
    }
    DIR *d = opendir(templates_dir);
    if (d) closedir(d);
    return d != NULL;
}

static void test_detect_real_templates(void)
{
    if (!find_templates()) {
        fprintf(stderr, "  skipped: %s not found\n", templates_dir);
        return;
    }
    DIR *d = opendir(templates_dir);
    struct dirent *e;
    int seen = 0;
    ASSERT(d);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 6, ".jinja") != 0) continue;
        const char *want = NULL;
        for (size_t i = 0; i < ARRAY_LEN(real_templates); i++)
            if (strcmp(real_templates[i].file, e->d_name) == 0) want = real_templates[i].family;
        if (!want) fprintf(stderr, "  %s is not in the expected table\n", e->d_name);
        ASSERT(want);
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", templates_dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ASSERT(f);
        static char text[1 << 20];
        size_t n = fread(text, 1, sizeof(text), f);
        fclose(f);
        enum chat_family fam;
        struct thaw_err err = {0};
        int rc = chat_family_detect(text, n, &fam, &err);
        const char *got = rc == 0 ? chat_family_name(fam) : "none";
        if (strcmp(got, want) != 0)
            fprintf(stderr, "  %s: got %s, want %s\n", e->d_name, got, want);
        ASSERT_STR_EQ(got, want);
        if (rc) ASSERT_CONTAINS(err.msg, "no built-in chat template fits");
        seen++;
    }
    closedir(d);
    ASSERT_EQ(seen, (int)ARRAY_LEN(real_templates));
}

int main(void)
{
    RUN(test_chatml);
    RUN(test_llama3);
    RUN(test_llama2);
    RUN(test_mistral);
    RUN(test_zephyr_phi3_gemma);
    RUN(test_deepseek_command_r);
    RUN(test_no_generation_prompt_and_errors);
    RUN(test_override_by_name);
    RUN(test_detect_inline);
    RUN(test_detect_real_templates);
    return TEST_REPORT();
}
