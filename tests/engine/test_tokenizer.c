/* Tokenizer algorithms on small hand-made vocabularies: pre-tokenizer splits
 * (expected values from Python's `regex` module running the original
 * patterns), SentencePiece merge order and byte fallback, BPE merge ranks,
 * special tokens, invalid input, and the streaming detokenizer. */
#include "engine/tokenizer_int.h"
#include "test.h"

struct split_case {
    enum tokenizer_pre pre;
    const char *text;
    const char *parts[20];
};

static const struct split_case split_cases[] = {
    {TOKENIZER_PRE_GPT2, "Hello world", {"Hello", " world", NULL}},
    {TOKENIZER_PRE_GPT2,
     "  Hello\x09"
     "\x09"
     "world  ",
     {" ", " Hello",
      "\x09"
      "",
      "\x09"
      "",
      "world", "  ", NULL}},
    {TOKENIZER_PRE_GPT2,
     "I'm HERE'S you'LL 'Re",
     {"I", "'m", " HERE", "'", "S", " you", "'", "LL", " '", "Re", NULL}},
    {TOKENIZER_PRE_GPT2, "12345 67 x1234567", {"12345", " 67", " x", "1234567", NULL}},
    {TOKENIZER_PRE_GPT2,
     "\x0a"
     "\x0a"
     "  \x0d"
     "\x0a"
     " x\x0a"
     "",
     {"\x0a"
      "\x0a"
      "  \x0d"
      "\x0a"
      "",
      " x",
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     "a  \x0a"
     "\x09"
     "b",
     {"a",
      "  \x0a"
      "",
      "\x09"
      "",
      "b", NULL}},
    {TOKENIZER_PRE_GPT2,
     "$$$ (hi)!!\x0a"
     "\x0a"
     "ok",
     {"$$$", " (", "hi", ")!!",
      "\x0a"
      "",
      "\x0a"
      "",
      "ok", NULL}},
    {TOKENIZER_PRE_GPT2,
     "na\xc3\xaf"
     "ve caf\xc3\xa9"
     " \xce\x95"
     "\xce\xbb"
     "\xce\xbb"
     "\xce\xb7"
     "\xce\xbd"
     "\xce\xb9"
     "\xce\xba"
     "\xce\xac"
     " \xd0\xbd"
     "\xd0\xb5"
     "\xd1\x89"
     "\xd0\xbe"
     "",
     {"na\xc3\xaf"
      "ve",
      " caf\xc3\xa9"
      "",
      " \xce\x95"
      "\xce\xbb"
      "\xce\xbb"
      "\xce\xb7"
      "\xce\xbd"
      "\xce\xb9"
      "\xce\xba"
      "\xce\xac"
      "",
      " \xd0\xbd"
      "\xd0\xb5"
      "\xd1\x89"
      "\xd0\xbe"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     "\xe6\x88\x91"
     "\xe6\x83\xb3"
     "\xe5\x9c\xa8"
     "apple\xe5\xb7\xa5"
     "\xe4\xbd\x9c"
     "1314151\xe5\xa4\xa9"
     "\xef\xbd\x9e"
     "",
     {"\xe6\x88\x91"
      "\xe6\x83\xb3"
      "\xe5\x9c\xa8"
      "apple\xe5\xb7\xa5"
      "\xe4\xbd\x9c"
      "",
      "1314151",
      "\xe5\xa4\xa9"
      "",
      "\xef\xbd\x9e"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     "\xe1\x9e\x80"
     "\xe1\x9e\xb6"
     "\xe1\x9e\x93"
     "\xe1\x9f\x8b"
     "\xe1\x9e\x8f"
     "\xe1\x9f\x82"
     "\xe1\x9e\x96"
     "\xe1\x9e\xb7"
     "\xe1\x9e\x9f"
     "\xe1\x9f\x81"
     "\xe1\x9e\x9f"
     "",
     {"\xe1\x9e\x80"
      "",
      "\xe1\x9e\xb6"
      "",
      "\xe1\x9e\x93"
      "",
      "\xe1\x9f\x8b"
      "",
      "\xe1\x9e\x8f"
      "",
      "\xe1\x9f\x82"
      "",
      "\xe1\x9e\x96"
      "",
      "\xe1\x9e\xb7"
      "",
      "\xe1\x9e\x9f"
      "",
      "\xe1\x9f\x81"
      "",
      "\xe1\x9e\x9f"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     " \xc2\xbd"
     " \xe2\x85\x94"
     " \xd9\xa3"
     "\xd9\xa4"
     "",
     {" \xc2\xbd"
      "",
      " \xe2\x85\x94"
      "",
      " \xd9\xa3"
      "\xd9\xa4"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     "  \xe3\x80\x80"
     "x\xc2\xa0"
     "y",
     {"  ",
      "\xe3\x80\x80"
      "",
      "x",
      "\xc2\xa0"
      "",
      "y", NULL}},
    {TOKENIZER_PRE_GPT2,
     "\xf0\x9f\xa6\x99"
     ".cpp \xf0\x9f\x98\x81"
     " ?",
     {"\xf0\x9f\xa6\x99"
      ".",
      "cpp",
      " \xf0\x9f\x98\x81"
      "",
      " ?", NULL}},
    {TOKENIZER_PRE_GPT2,
     "don't\x0a"
     "\x0a"
     "\x0a"
     "",
     {"don", "'t",
      "\x0a"
      "\x0a"
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_GPT2,
     "\x09"
     "Hello",
     {"\x09"
      "",
      "Hello", NULL}},
    {TOKENIZER_PRE_GPT2, " ( 'x", {" (", " '", "x", NULL}},
    {TOKENIZER_PRE_GPT2,
     ".\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "A",
     {".",
      "\x0d"
      "\x0a"
      "\x0d"
      "",
      "\x0a"
      "",
      "A", NULL}},
    {TOKENIZER_PRE_LLAMA3, "Hello world", {"Hello", " world", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "  Hello\x09"
     "\x09"
     "world  ",
     {" ", " Hello",
      "\x09"
      "",
      "\x09"
      "world",
      "  ", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "I'm HERE'S you'LL 'Re",
     {"I", "'m", " HERE", "'S", " you", "'LL", " '", "Re", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "12345 67 x1234567",
     {"123", "45", " ", "67", " x", "123", "456", "7", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "\x0a"
     "\x0a"
     "  \x0d"
     "\x0a"
     " x\x0a"
     "",
     {"\x0a"
      "\x0a"
      "  \x0d"
      "\x0a"
      "",
      " x",
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "a  \x0a"
     "\x09"
     "b",
     {"a",
      "  \x0a"
      "",
      "\x09"
      "b",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "$$$ (hi)!!\x0a"
     "\x0a"
     "ok",
     {"$$$", " (", "hi",
      ")!!\x0a"
      "\x0a"
      "",
      "ok", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "na\xc3\xaf"
     "ve caf\xc3\xa9"
     " \xce\x95"
     "\xce\xbb"
     "\xce\xbb"
     "\xce\xb7"
     "\xce\xbd"
     "\xce\xb9"
     "\xce\xba"
     "\xce\xac"
     " \xd0\xbd"
     "\xd0\xb5"
     "\xd1\x89"
     "\xd0\xbe"
     "",
     {"na\xc3\xaf"
      "ve",
      " caf\xc3\xa9"
      "",
      " \xce\x95"
      "\xce\xbb"
      "\xce\xbb"
      "\xce\xb7"
      "\xce\xbd"
      "\xce\xb9"
      "\xce\xba"
      "\xce\xac"
      "",
      " \xd0\xbd"
      "\xd0\xb5"
      "\xd1\x89"
      "\xd0\xbe"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "\xe6\x88\x91"
     "\xe6\x83\xb3"
     "\xe5\x9c\xa8"
     "apple\xe5\xb7\xa5"
     "\xe4\xbd\x9c"
     "1314151\xe5\xa4\xa9"
     "\xef\xbd\x9e"
     "",
     {"\xe6\x88\x91"
      "\xe6\x83\xb3"
      "\xe5\x9c\xa8"
      "apple\xe5\xb7\xa5"
      "\xe4\xbd\x9c"
      "",
      "131", "415", "1",
      "\xe5\xa4\xa9"
      "",
      "\xef\xbd\x9e"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "\xe1\x9e\x80"
     "\xe1\x9e\xb6"
     "\xe1\x9e\x93"
     "\xe1\x9f\x8b"
     "\xe1\x9e\x8f"
     "\xe1\x9f\x82"
     "\xe1\x9e\x96"
     "\xe1\x9e\xb7"
     "\xe1\x9e\x9f"
     "\xe1\x9f\x81"
     "\xe1\x9e\x9f"
     "",
     {"\xe1\x9e\x80"
      "",
      "\xe1\x9e\xb6"
      "\xe1\x9e\x93"
      "",
      "\xe1\x9f\x8b"
      "\xe1\x9e\x8f"
      "",
      "\xe1\x9f\x82"
      "\xe1\x9e\x96"
      "",
      "\xe1\x9e\xb7"
      "\xe1\x9e\x9f"
      "",
      "\xe1\x9f\x81"
      "\xe1\x9e\x9f"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     " \xc2\xbd"
     " \xe2\x85\x94"
     " \xd9\xa3"
     "\xd9\xa4"
     "",
     {" ",
      "\xc2\xbd"
      "",
      " ",
      "\xe2\x85\x94"
      "",
      " ",
      "\xd9\xa3"
      "\xd9\xa4"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "  \xe3\x80\x80"
     "x\xc2\xa0"
     "y",
     {"  ",
      "\xe3\x80\x80"
      "x",
      "\xc2\xa0"
      "y",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "\xf0\x9f\xa6\x99"
     ".cpp \xf0\x9f\x98\x81"
     " ?",
     {"\xf0\x9f\xa6\x99"
      ".",
      "cpp",
      " \xf0\x9f\x98\x81"
      "",
      " ?", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "don't\x0a"
     "\x0a"
     "\x0a"
     "",
     {"don", "'t",
      "\x0a"
      "\x0a"
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_LLAMA3,
     "\x09"
     "Hello",
     {"\x09"
      "Hello",
      NULL}},
    {TOKENIZER_PRE_LLAMA3, " ( 'x", {" (", " '", "x", NULL}},
    {TOKENIZER_PRE_LLAMA3,
     ".\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "A",
     {".\x0d"
      "\x0a"
      "\x0d"
      "\x0a"
      "",
      "A", NULL}},
    {TOKENIZER_PRE_QWEN2, "Hello world", {"Hello", " world", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "  Hello\x09"
     "\x09"
     "world  ",
     {" ", " Hello",
      "\x09"
      "",
      "\x09"
      "world",
      "  ", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "I'm HERE'S you'LL 'Re",
     {"I", "'m", " HERE", "'S", " you", "'LL", " '", "Re", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "12345 67 x1234567",
     {"1", "2", "3", "4", "5", " ", "6", "7", " x", "1", "2", "3", "4", "5", "6", "7", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "\x0a"
     "\x0a"
     "  \x0d"
     "\x0a"
     " x\x0a"
     "",
     {"\x0a"
      "\x0a"
      "  \x0d"
      "\x0a"
      "",
      " x",
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "a  \x0a"
     "\x09"
     "b",
     {"a",
      "  \x0a"
      "",
      "\x09"
      "b",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "$$$ (hi)!!\x0a"
     "\x0a"
     "ok",
     {"$$$", " (", "hi",
      ")!!\x0a"
      "\x0a"
      "",
      "ok", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "na\xc3\xaf"
     "ve caf\xc3\xa9"
     " \xce\x95"
     "\xce\xbb"
     "\xce\xbb"
     "\xce\xb7"
     "\xce\xbd"
     "\xce\xb9"
     "\xce\xba"
     "\xce\xac"
     " \xd0\xbd"
     "\xd0\xb5"
     "\xd1\x89"
     "\xd0\xbe"
     "",
     {"na\xc3\xaf"
      "ve",
      " caf\xc3\xa9"
      "",
      " \xce\x95"
      "\xce\xbb"
      "\xce\xbb"
      "\xce\xb7"
      "\xce\xbd"
      "\xce\xb9"
      "\xce\xba"
      "\xce\xac"
      "",
      " \xd0\xbd"
      "\xd0\xb5"
      "\xd1\x89"
      "\xd0\xbe"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "\xe6\x88\x91"
     "\xe6\x83\xb3"
     "\xe5\x9c\xa8"
     "apple\xe5\xb7\xa5"
     "\xe4\xbd\x9c"
     "1314151\xe5\xa4\xa9"
     "\xef\xbd\x9e"
     "",
     {"\xe6\x88\x91"
      "\xe6\x83\xb3"
      "\xe5\x9c\xa8"
      "apple\xe5\xb7\xa5"
      "\xe4\xbd\x9c"
      "",
      "1", "3", "1", "4", "1", "5", "1",
      "\xe5\xa4\xa9"
      "",
      "\xef\xbd\x9e"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "\xe1\x9e\x80"
     "\xe1\x9e\xb6"
     "\xe1\x9e\x93"
     "\xe1\x9f\x8b"
     "\xe1\x9e\x8f"
     "\xe1\x9f\x82"
     "\xe1\x9e\x96"
     "\xe1\x9e\xb7"
     "\xe1\x9e\x9f"
     "\xe1\x9f\x81"
     "\xe1\x9e\x9f"
     "",
     {"\xe1\x9e\x80"
      "",
      "\xe1\x9e\xb6"
      "\xe1\x9e\x93"
      "",
      "\xe1\x9f\x8b"
      "\xe1\x9e\x8f"
      "",
      "\xe1\x9f\x82"
      "\xe1\x9e\x96"
      "",
      "\xe1\x9e\xb7"
      "\xe1\x9e\x9f"
      "",
      "\xe1\x9f\x81"
      "\xe1\x9e\x9f"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     " \xc2\xbd"
     " \xe2\x85\x94"
     " \xd9\xa3"
     "\xd9\xa4"
     "",
     {" ",
      "\xc2\xbd"
      "",
      " ",
      "\xe2\x85\x94"
      "",
      " ",
      "\xd9\xa3"
      "",
      "\xd9\xa4"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "  \xe3\x80\x80"
     "x\xc2\xa0"
     "y",
     {"  ",
      "\xe3\x80\x80"
      "x",
      "\xc2\xa0"
      "y",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "\xf0\x9f\xa6\x99"
     ".cpp \xf0\x9f\x98\x81"
     " ?",
     {"\xf0\x9f\xa6\x99"
      ".",
      "cpp",
      " \xf0\x9f\x98\x81"
      "",
      " ?", NULL}},
    {TOKENIZER_PRE_QWEN2,
     "don't\x0a"
     "\x0a"
     "\x0a"
     "",
     {"don", "'t",
      "\x0a"
      "\x0a"
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_QWEN2,
     "\x09"
     "Hello",
     {"\x09"
      "Hello",
      NULL}},
    {TOKENIZER_PRE_QWEN2, " ( 'x", {" (", " '", "x", NULL}},
    {TOKENIZER_PRE_QWEN2,
     ".\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "A",
     {".\x0d"
      "\x0a"
      "\x0d"
      "\x0a"
      "",
      "A", NULL}},
    {TOKENIZER_PRE_SMOLLM, "Hello world", {"Hello", " world", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "  Hello\x09"
     "\x09"
     "world  ",
     {" ", " Hello",
      "\x09"
      "",
      "\x09"
      "",
      "world", "  ", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "I'm HERE'S you'LL 'Re",
     {"I", "'m", " HERE", "'", "S", " you", "'", "LL", " '", "Re", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "12345 67 x1234567",
     {"1", "2", "3", "4", "5", " ", "6", "7", " x", "1", "2", "3", "4", "5", "6", "7", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "\x0a"
     "\x0a"
     "  \x0d"
     "\x0a"
     " x\x0a"
     "",
     {"\x0a"
      "\x0a"
      "  \x0d"
      "\x0a"
      "",
      " x",
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "a  \x0a"
     "\x09"
     "b",
     {"a",
      "  \x0a"
      "",
      "\x09"
      "",
      "b", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "$$$ (hi)!!\x0a"
     "\x0a"
     "ok",
     {"$$$", " (", "hi", ")!!",
      "\x0a"
      "",
      "\x0a"
      "",
      "ok", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "na\xc3\xaf"
     "ve caf\xc3\xa9"
     " \xce\x95"
     "\xce\xbb"
     "\xce\xbb"
     "\xce\xb7"
     "\xce\xbd"
     "\xce\xb9"
     "\xce\xba"
     "\xce\xac"
     " \xd0\xbd"
     "\xd0\xb5"
     "\xd1\x89"
     "\xd0\xbe"
     "",
     {"na\xc3\xaf"
      "ve",
      " caf\xc3\xa9"
      "",
      " \xce\x95"
      "\xce\xbb"
      "\xce\xbb"
      "\xce\xb7"
      "\xce\xbd"
      "\xce\xb9"
      "\xce\xba"
      "\xce\xac"
      "",
      " \xd0\xbd"
      "\xd0\xb5"
      "\xd1\x89"
      "\xd0\xbe"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "\xe6\x88\x91"
     "\xe6\x83\xb3"
     "\xe5\x9c\xa8"
     "apple\xe5\xb7\xa5"
     "\xe4\xbd\x9c"
     "1314151\xe5\xa4\xa9"
     "\xef\xbd\x9e"
     "",
     {"\xe6\x88\x91"
      "\xe6\x83\xb3"
      "\xe5\x9c\xa8"
      "apple\xe5\xb7\xa5"
      "\xe4\xbd\x9c"
      "",
      "1", "3", "1", "4", "1", "5", "1",
      "\xe5\xa4\xa9"
      "",
      "\xef\xbd\x9e"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "\xe1\x9e\x80"
     "\xe1\x9e\xb6"
     "\xe1\x9e\x93"
     "\xe1\x9f\x8b"
     "\xe1\x9e\x8f"
     "\xe1\x9f\x82"
     "\xe1\x9e\x96"
     "\xe1\x9e\xb7"
     "\xe1\x9e\x9f"
     "\xe1\x9f\x81"
     "\xe1\x9e\x9f"
     "",
     {"\xe1\x9e\x80"
      "",
      "\xe1\x9e\xb6"
      "",
      "\xe1\x9e\x93"
      "",
      "\xe1\x9f\x8b"
      "",
      "\xe1\x9e\x8f"
      "",
      "\xe1\x9f\x82"
      "",
      "\xe1\x9e\x96"
      "",
      "\xe1\x9e\xb7"
      "",
      "\xe1\x9e\x9f"
      "",
      "\xe1\x9f\x81"
      "",
      "\xe1\x9e\x9f"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     " \xc2\xbd"
     " \xe2\x85\x94"
     " \xd9\xa3"
     "\xd9\xa4"
     "",
     {" ",
      "\xc2\xbd"
      "",
      " ",
      "\xe2\x85\x94"
      "",
      " ",
      "\xd9\xa3"
      "",
      "\xd9\xa4"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "  \xe3\x80\x80"
     "x\xc2\xa0"
     "y",
     {"  ",
      "\xe3\x80\x80"
      "",
      "x",
      "\xc2\xa0"
      "",
      "y", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "\xf0\x9f\xa6\x99"
     ".cpp \xf0\x9f\x98\x81"
     " ?",
     {"\xf0\x9f\xa6\x99"
      ".",
      "cpp",
      " \xf0\x9f\x98\x81"
      "",
      " ?", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "don't\x0a"
     "\x0a"
     "\x0a"
     "",
     {"don", "'t",
      "\x0a"
      "\x0a"
      "\x0a"
      "",
      NULL}},
    {TOKENIZER_PRE_SMOLLM,
     "\x09"
     "Hello",
     {"\x09"
      "",
      "Hello", NULL}},
    {TOKENIZER_PRE_SMOLLM, " ( 'x", {" (", " '", "x", NULL}},
    {TOKENIZER_PRE_SMOLLM,
     ".\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "A",
     {".",
      "\x0d"
      "\x0a"
      "\x0d"
      "",
      "\x0a"
      "",
      "A", NULL}},
};

static void test_pre_splits(void)
{
    for (size_t c = 0; c < ARRAY_LEN(split_cases); c++) {
        const struct split_case *k = &split_cases[c];
        size_t n = strlen(k->text), ends[256], nw = 0, np = 0, start = 0;
        ASSERT_EQ(tokenizer_pre_split(k->pre, k->text, n, ends, &nw), 0);
        while (k->parts[np])
            np++;
        if (nw != np) fprintf(stderr, "  case %zu (pre %d) \"%s\"\n", c, (int)k->pre, k->text);
        ASSERT_EQ(nw, np);
        for (size_t w = 0; w < nw; start = ends[w++]) {
            size_t len = ends[w] - start;
            if (len != strlen(k->parts[w]) || memcmp(k->text + start, k->parts[w], len) != 0)
                fprintf(stderr, "  case %zu word %zu: \"%.*s\" vs \"%s\"\n", c, w, (int)len,
                        k->text + start, k->parts[w]);
            ASSERT_EQ(len, strlen(k->parts[w]));
            ASSERT(memcmp(k->text + start, k->parts[w], len) == 0);
        }
    }
}

static void test_utf8_decoder(void)
{
    uint32_t cp = 0;
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"A", 1, &cp), 1);
    ASSERT_EQ(cp, 'A');
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xc3\xa9", 2, &cp), 2);
    ASSERT_EQ(cp, 0xe9);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xf0\x9f\xa6\x99", 4, &cp), 4);
    ASSERT_EQ(cp, 0x1f999);
    /* incomplete but valid prefixes */
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xf0\x9f\xa6", 3, &cp), 0);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xe2", 1, &cp), 0);
    /* never valid: overlong, surrogate, too large, stray continuation, bad lead */
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xc0\xaf", 2, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xe0\x80", 2, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xed\xa0\x80", 3, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xf4\x90", 2, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\x80", 1, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xff", 1, &cp), -1);
    ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)"\xc3(", 2, &cp), -1);
    /* classes */
    ASSERT_EQ(tokenizer_ucat('a'), UCAT_L);
    ASSERT_EQ(tokenizer_ucat(0x4e2d), UCAT_L);     /* CJK */
    ASSERT_EQ(tokenizer_ucat(0x17b6), UCAT_OTHER); /* Khmer vowel sign: Mc */
    ASSERT_EQ(tokenizer_ucat(0xbd), UCAT_N);       /* ½ is No */
    ASSERT_EQ(tokenizer_ucat(0x663), UCAT_N);      /* Arabic-Indic 3 */
    ASSERT_EQ(tokenizer_ucat(0x3000), UCAT_W);
    ASSERT_EQ(tokenizer_ucat(0x1f999), UCAT_OTHER);
    /* the GPT-2 byte map is a bijection */
    for (int b = 0; b < 256; b++) {
        char m[2];
        int l = tokenizer_byte_to_utf8((uint8_t)b, m);
        ASSERT_EQ(tokenizer_utf8_next((const uint8_t *)m, (size_t)l, &cp), l);
        ASSERT_EQ(tokenizer_cp_to_byte(cp), b);
    }
    ASSERT_EQ(tokenizer_cp_to_byte(0x20), -1);
    ASSERT_EQ(tokenizer_cp_to_byte(0x144), -1);
}

/* ------------------------------------------------------------ SentencePiece */

#define SP "\xe2\x96\x81"

static struct engine_tokenizer *spm_vocab(const float *piece_scores, bool with_bytes)
{
    static const char *pieces[] = {SP, "a", "b", "c", SP "a", "ab", SP "ab", "abc", "bc", "<tool>"};
    const char *tokens[3 + 256 + ARRAY_LEN(pieces)];
    char bytes[256][8];
    float scores[ARRAY_LEN(tokens)];
    int32_t types[ARRAY_LEN(tokens)];
    int32_t n = 0;
    tokens[n] = "<unk>", types[n] = TOKENIZER_TYPE_UNKNOWN, scores[n++] = 0;
    tokens[n] = "<s>", types[n] = TOKENIZER_TYPE_CONTROL, scores[n++] = 0;
    tokens[n] = "</s>", types[n] = TOKENIZER_TYPE_CONTROL, scores[n++] = 0;
    for (int b = 0; with_bytes && b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        tokens[n] = bytes[b], types[n] = TOKENIZER_TYPE_BYTE, scores[n++] = 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(pieces); i++) {
        tokens[n] = pieces[i];
        types[n] = i + 1 == ARRAY_LEN(pieces) ? TOKENIZER_TYPE_USER_DEFINED : TOKENIZER_TYPE_NORMAL;
        scores[n++] = piece_scores[i];
    }
    struct tokenizer_desc d = {.kind = TOKENIZER_SPM,
                               .n_tokens = n,
                               .tokens = tokens,
                               .scores = scores,
                               .types = types,
                               .bos = 1,
                               .eos = 2,
                               .unk = 0,
                               .pad = -1,
                               .eot = -1,
                               .eom = -1,
                               .add_bos = true,
                               .add_space_prefix = true};
    struct engine_tokenizer *tok = NULL;
    struct thaw_err err = {0};
    if (tokenizer_new(&d, &tok, &err) != 0) fprintf(stderr, "  %s\n", err.msg);
    return tok;
}

/* ids as token texts joined by '|' */
static void texts_of(const struct engine_tokenizer *tok, const int32_t *ids, size_t n,
                     struct buf *b)
{
    buf_reset(b);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = tokenizer_token_text(tok, ids[i], &len);
        if (i) buf_append(b, "|", 1);
        buf_append(b, t, len);
    }
    buf_reserve(b, 1);
}

static void encode_texts(const struct engine_tokenizer *tok, const char *text, bool bos,
                         bool special, struct buf *b)
{
    int32_t *ids = NULL;
    size_t n = 0;
    buf_reset(b);
    if (tokenizer_encode(tok, text, strlen(text), bos, special, &ids, &n, NULL) == 0)
        texts_of(tok, ids, n, b);
    free(ids);
}

static void test_spm_merge_by_score(void)
{
    /* scores for: ▁ a b c ▁a ab ▁ab abc bc <tool> */
    const float s1[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    const float s2[] = {-10, -10, -10, -10, -2, -1, -0.7f, -0.9f, -3, 0};
    struct buf b = {0};
    struct engine_tokenizer *t1 = spm_vocab(s1, true), *t2 = spm_vocab(s2, true);
    ASSERT(t1 && t2);
    /* "ab" merges first (-1); then "abc" (-0.5) beats "▁ab" (-4) */
    encode_texts(t1, "abc", false, false, &b);
    ASSERT_STR_EQ(b.data, SP "|abc");
    /* same start, but now "▁ab" (-0.7) beats "abc" (-0.9) */
    encode_texts(t2, "abc", false, false, &b);
    ASSERT_STR_EQ(b.data, SP "ab|c");
    /* BOS, spaces become ▁, a second word gets no extra prefix */
    encode_texts(t1, "a bc", true, false, &b);
    ASSERT_STR_EQ(b.data, "<s>|" SP "a|" SP "|bc");
    encode_texts(t1, "", false, false, &b);
    ASSERT_STR_EQ(b.data, "");
    tokenizer_free(t1);
    tokenizer_free(t2);
    buf_free(&b);
}

static void test_spm_byte_fallback_and_unk(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    struct buf b = {0}, dec = {0};
    struct engine_tokenizer *tok = spm_vocab(s, true), *nobytes = spm_vocab(s, false);
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT(tok && nobytes);
    encode_texts(tok, "a\xc3\xa9", false, false, &b);
    ASSERT_STR_EQ(b.data, SP "a|<0xC3>|<0xA9>");
    /* without byte tokens an unknown character becomes one <unk>, shown as ▅ */
    encode_texts(nobytes, "a\xc3\xa9", false, false, &b);
    ASSERT_STR_EQ(b.data, SP "a|<unk>");
    ASSERT_EQ(tokenizer_encode(nobytes, "a\xc3\xa9", 3, false, false, &ids, &n, NULL), 0);
    ASSERT_EQ(tokenizer_decode(nobytes, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec, NULL), 0);
    ASSERT_STR_EQ(dec.data, "a\xe2\x96\x85");
    free(ids);
    /* invalid UTF-8 goes through byte tokens and comes back unchanged */
    const char bad[] = "\xff"
                       "a\xc3 b\xe2\x96";
    buf_reset(&dec);
    ASSERT_EQ(tokenizer_encode(tok, bad, sizeof(bad) - 1, true, false, &ids, &n, NULL), 0);
    ASSERT_EQ(tokenizer_decode(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec, NULL), 0);
    ASSERT_EQ(dec.len, sizeof(bad) - 1);
    ASSERT(memcmp(dec.data, bad, dec.len) == 0);
    free(ids);
    tokenizer_free(tok);
    tokenizer_free(nobytes);
    buf_free(&b);
    buf_free(&dec);
}

static void test_spm_specials(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    struct buf b = {0};
    struct engine_tokenizer *tok = spm_vocab(s, true);
    ASSERT(tok);
    /* control tokens only with parse_special; text after one gets a ▁ again */
    encode_texts(tok, "a</s>b", false, true, &b);
    ASSERT_STR_EQ(b.data, SP "a|</s>|" SP "|b");
    encode_texts(tok, "a</s>", false, false, &b);
    ASSERT(strstr(b.data, "</s>") == NULL);
    /* user-defined tokens match even without parse_special */
    encode_texts(tok, "<tool>", false, false, &b);
    ASSERT_STR_EQ(b.data, "<tool>");
    ASSERT(tokenizer_is_eog(tok, 2));
    ASSERT(!tokenizer_is_eog(tok, 1));
    ASSERT(!tokenizer_is_eog(tok, 99999));
    tokenizer_free(tok);
    buf_free(&b);
}

/* -------------------------------------------------------------------- BPE */

/* 256 byte symbols, then the given extra tokens; merges as given. */
static struct engine_tokenizer *bpe_vocab(enum tokenizer_pre pre, const char *const *extra,
                                          size_t n_extra, const char *const *merges,
                                          size_t n_merges, const int32_t *extra_types)
{
    char bytes[256][3];
    const char *tokens[256 + 16];
    int32_t types[256 + 16];
    int32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int l = tokenizer_byte_to_utf8((uint8_t)b, bytes[b]);
        bytes[b][l] = '\0';
        tokens[n] = bytes[b], types[n++] = TOKENIZER_TYPE_NORMAL;
    }
    for (size_t i = 0; i < n_extra; i++)
        tokens[n] = extra[i], types[n++] = extra_types ? extra_types[i] : TOKENIZER_TYPE_NORMAL;
    struct tokenizer_desc d = {.kind = TOKENIZER_BPE,
                               .pre = pre,
                               .n_tokens = n,
                               .tokens = tokens,
                               .types = types,
                               .merges = merges,
                               .n_merges = n_merges,
                               .bos = -1,
                               .eos = -1,
                               .unk = -1,
                               .pad = -1,
                               .eot = -1,
                               .eom = -1};
    struct engine_tokenizer *tok = NULL;
    struct thaw_err err = {0};
    if (tokenizer_new(&d, &tok, &err) != 0) fprintf(stderr, "  %s\n", err.msg);
    return tok;
}

static void test_bpe_merge_ranks(void)
{
    const char *extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "ab", "bc"};
    const char *m1[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "a b", "b c"};
    const char *m2[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "b c", "a b"};
    struct buf b = {0};
    struct engine_tokenizer *t1 = bpe_vocab(TOKENIZER_PRE_GPT2, extra, 7, m1, 7, NULL);
    struct engine_tokenizer *t2 = bpe_vocab(TOKENIZER_PRE_GPT2, extra, 7, m2, 7, NULL);
    ASSERT(t1 && t2);
    encode_texts(t1, "hello world", false, false, &b);
    ASSERT_STR_EQ(b.data, "hello|\xc4\xa0w|o|r|l|d");
    encode_texts(t1, "abc", false, false, &b);
    ASSERT_STR_EQ(b.data, "ab|c");
    encode_texts(t2, "abc", false, false, &b);
    ASSERT_STR_EQ(b.data, "a|bc");
    /* any bytes round-trip through the byte-level symbols */
    const char bad[] = "\xff\xfe h\xc3 \x00ll\xe2\x82";
    int32_t *ids = NULL;
    size_t n = 0;
    struct buf dec = {0};
    ASSERT_EQ(tokenizer_encode(t1, bad, sizeof(bad) - 1, false, false, &ids, &n, NULL), 0);
    ASSERT_EQ(tokenizer_decode(t1, ids, n, 0, &dec, NULL), 0);
    ASSERT_EQ(dec.len, sizeof(bad) - 1);
    ASSERT(memcmp(dec.data, bad, dec.len) == 0);
    free(ids);
    buf_free(&dec);
    tokenizer_free(t1);
    tokenizer_free(t2);
    buf_free(&b);
}

static void test_bpe_ignore_merges_and_specials(void)
{
    /* "hello" is a token but no merge path leads to it: GPT-2 cannot reach it,
     * Llama 3 (ignore_merges) takes the whole word */
    const char *extra[] = {"he", "hello", "<|im_start|>", "<tool>"};
    const int32_t types[] = {TOKENIZER_TYPE_NORMAL, TOKENIZER_TYPE_NORMAL, TOKENIZER_TYPE_CONTROL,
                             TOKENIZER_TYPE_USER_DEFINED};
    const char *merges[] = {"h e"};
    struct buf b = {0};
    struct engine_tokenizer *g = bpe_vocab(TOKENIZER_PRE_GPT2, extra, 4, merges, 1, types);
    struct engine_tokenizer *l3 = bpe_vocab(TOKENIZER_PRE_LLAMA3, extra, 4, merges, 1, types);
    ASSERT(g && l3);
    encode_texts(g, "hello", false, false, &b);
    ASSERT_STR_EQ(b.data, "he|l|l|o");
    encode_texts(l3, "hello", false, false, &b);
    ASSERT_STR_EQ(b.data, "hello");
    encode_texts(l3, "<|im_start|>he<tool>", false, true, &b);
    ASSERT_STR_EQ(b.data, "<|im_start|>|he|<tool>");
    /* without parse_special it is plain text, one symbol per byte here */
    encode_texts(l3, "<|im_start|>", false, false, &b);
    ASSERT_STR_EQ(b.data, "<|||i|m|_|s|t|a|r|t|||>");
    /* control tokens render only on request */
    int32_t id = tokenizer_find(l3, "<|im_start|>", 12);
    struct buf piece = {0};
    ASSERT_CMP(id, >=, 0);
    ASSERT_EQ(tokenizer_token_to_piece(l3, id, 0, &piece, NULL), 0);
    ASSERT_EQ(piece.len, 0);
    ASSERT_EQ(tokenizer_token_to_piece(l3, id, TOKENIZER_DECODE_SPECIAL, &piece, NULL), 0);
    ASSERT_STR_EQ(piece.data, "<|im_start|>");
    buf_free(&piece);
    tokenizer_free(g);
    tokenizer_free(l3);
    buf_free(&b);
}

static void test_bad_descriptions(void)
{
    struct engine_tokenizer *tok = (void *)1;
    struct thaw_err err = {0};
    struct tokenizer_desc d = {.kind = TOKENIZER_BPE};
    ASSERT_EQ(tokenizer_new(&d, &tok, &err), THAW_EINVAL);
    ASSERT(tok == NULL);
    const char *tokens[] = {"a", "b", "ab"}, *merges[] = {"ab"};
    d.n_tokens = 3, d.tokens = tokens, d.merges = merges, d.n_merges = 1;
    ASSERT_EQ(tokenizer_new(&d, &tok, &err), THAW_EINVAL);
    ASSERT_CONTAINS(err.msg, "merge 0");
    d.kind = 7;
    ASSERT_EQ(tokenizer_new(&d, &tok, &err), THAW_EINVAL);
}

/* ------------------------------------------------------------- detokenizer */

static void test_decode_errors(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    struct engine_tokenizer *tok = spm_vocab(s, true);
    struct engine_detok *d = NULL;
    struct buf out = {0};
    struct thaw_err err = {0};
    int32_t ids[] = {5, -1};
    ASSERT(tok);
    buf_append_str(&out, "keep");
    ASSERT_EQ(tokenizer_decode(tok, ids, 2, 0, &out, &err), THAW_ERANGE);
    ASSERT_STR_EQ(out.data, "keep");
    ASSERT_CONTAINS(err.msg, "out of range");
    ASSERT_EQ(tokenizer_token_to_piece(tok, 1 << 30, 0, &out, &err), THAW_ERANGE);
    /* one piece keeps its space even with STRIP_SPACE (that flag is for sequences) */
    buf_reset(&out);
    ASSERT_EQ(tokenizer_token_to_piece(tok, tokenizer_find(tok, SP "a", 4),
                                       TOKENIZER_DECODE_STRIP_SPACE, &out, &err),
              0);
    ASSERT_STR_EQ(out.data, " a");
    ASSERT_EQ(tokenizer_detok_new(tok, 0, &d), 0);
    ASSERT_EQ(tokenizer_detok_push(d, tokenizer_n_tokens(tok), &out, &err), THAW_ERANGE);
    ASSERT(tokenizer_token_text(tok, -3, NULL) == NULL);
    tokenizer_detok_free(d);
    tokenizer_detok_free(NULL);
    tokenizer_free(NULL);
    tokenizer_free(tok);
    buf_free(&out);
}

static int32_t byte_tok(const struct engine_tokenizer *tok, uint8_t b)
{
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    return tokenizer_find(tok, name, 6);
}

static void test_detok_holds_split_characters(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    struct engine_tokenizer *tok = spm_vocab(s, true);
    struct engine_detok *d = NULL;
    struct buf out = {0};
    const uint8_t llama[] = {0xf0, 0x9f, 0xa6, 0x99};
    ASSERT(tok);
    ASSERT_EQ(tokenizer_detok_new(tok, 0, &d), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(tokenizer_detok_push(d, byte_tok(tok, llama[i]), &out, NULL), 0);
        ASSERT_EQ(out.len, 0);
        ASSERT_EQ(tokenizer_detok_pending(d), (size_t)i + 1);
    }
    ASSERT_EQ(tokenizer_detok_push(d, byte_tok(tok, llama[3]), &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "\xf0\x9f\xa6\x99");
    /* a byte that can never start a character is replaced at once */
    buf_reset(&out);
    ASSERT_EQ(tokenizer_detok_push(d, byte_tok(tok, 0xff), &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "\xef\xbf\xbd");
    /* a lead byte, then a normal token: the lead is bad, the token comes out */
    buf_reset(&out);
    ASSERT_EQ(tokenizer_detok_push(d, byte_tok(tok, 0xe2), &out, NULL), 0);
    ASSERT_EQ(out.len, 0);
    ASSERT_EQ(tokenizer_detok_push(d, tokenizer_find(tok, "ab", 2), &out, NULL), 0);
    ASSERT_STR_EQ(out.data, "\xef\xbf\xbd"
                            "ab");
    /* held bytes at the end of the stream become U+FFFD */
    buf_reset(&out);
    ASSERT_EQ(tokenizer_detok_push(d, byte_tok(tok, 0xc3), &out, NULL), 0);
    ASSERT_EQ(tokenizer_detok_flush(d, &out), 0);
    ASSERT_STR_EQ(out.data, "\xef\xbf\xbd");
    ASSERT_EQ(tokenizer_detok_pending(d), 0);
    tokenizer_detok_free(d);
    tokenizer_free(tok);
    buf_free(&out);
}

/* Random valid UTF-8 text as a random mix of byte tokens and pieces: the
 * streamed chunks always equal the whole decode. */
static void test_detok_random_streams(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    static const char *chars[] = {
        "a", "b", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x81", "\xd0\xb6"};
    struct engine_tokenizer *tok = spm_vocab(s, true);
    uint64_t x = 12345;
    ASSERT(tok);
    for (int round = 0; round < 300; round++) {
        int32_t ids[256];
        size_t n = 0;
        while (n < 200) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *c = chars[(x >> 33) % ARRAY_LEN(chars)];
            if (strcmp(c, "a") == 0 && (x >> 20) % 2)
                ids[n++] = tokenizer_find(tok, "ab", 2);
            else
                for (const char *p = c; *p; p++)
                    ids[n++] = byte_tok(tok, (uint8_t)*p);
        }
        struct buf whole = {0}, streamed = {0};
        struct engine_detok *d = NULL;
        ASSERT_EQ(tokenizer_decode(tok, ids, n, 0, &whole, NULL), 0);
        ASSERT_EQ(tokenizer_detok_new(tok, 0, &d), 0);
        for (size_t i = 0; i < n; i++)
            ASSERT_EQ(tokenizer_detok_push(d, ids[i], &streamed, NULL), 0);
        ASSERT_EQ(tokenizer_detok_flush(d, &streamed), 0);
        ASSERT_EQ(streamed.len, whole.len);
        ASSERT(memcmp(streamed.data, whole.data, whole.len) == 0);
        tokenizer_detok_free(d);
        buf_free(&whole);
        buf_free(&streamed);
    }
    tokenizer_free(tok);
}

/* 400 KB in one SentencePiece merge run: must finish (O(n log n)) and
 * round-trip. */
static void test_long_input(void)
{
    const float s[] = {-10, -10, -10, -10, -2, -1, -4, -0.5f, -3, 0};
    struct engine_tokenizer *tok = spm_vocab(s, true);
    size_t len = 400000;
    char *text = malloc(len + 1);
    int32_t *ids = NULL;
    size_t n = 0;
    struct buf dec = {0};
    ASSERT(tok && text);
    for (size_t i = 0; i < len; i++)
        text[i] = "abc ab\xc3\xa9"[i % 8];
    text[len] = '\0';
    ASSERT_EQ(tokenizer_encode(tok, text, len, false, false, &ids, &n, NULL), 0);
    ASSERT_EQ(tokenizer_decode(tok, ids, n, TOKENIZER_DECODE_STRIP_SPACE, &dec, NULL), 0);
    ASSERT_EQ(dec.len, len);
    ASSERT(memcmp(dec.data, text, len) == 0);
    free(ids);
    free(text);
    buf_free(&dec);
    tokenizer_free(tok);
}

int main(void)
{
    RUN(test_pre_splits);
    RUN(test_utf8_decoder);
    RUN(test_spm_merge_by_score);
    RUN(test_spm_byte_fallback_and_unk);
    RUN(test_spm_specials);
    RUN(test_bpe_merge_ranks);
    RUN(test_bpe_ignore_merges_and_specials);
    RUN(test_bad_descriptions);
    RUN(test_decode_errors);
    RUN(test_detok_holds_split_characters);
    RUN(test_detok_random_streams);
    RUN(test_long_input);
    return TEST_REPORT();
}
