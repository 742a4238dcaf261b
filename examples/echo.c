/* The smallest thaw exec function: answers every request with its input.
 * thaw writes requests as {"id":N,"input":X} or {"id":N,"stream":true,"input":X}
 * on one line, so the id and input can be cut out without a JSON parser. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    fputs("{\"ready\":true}\n", stdout);
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        char *id = strstr(line, "\"id\":");
        char *input = strstr(line, "\"input\":");
        if (!id || !input || n < 2 || line[n - 1] != '}') continue;
        id += 5;
        size_t id_len = strspn(id, "0123456789");
        input += 8;
        line[n - 1] = 0; /* drop the closing brace of the request */
        fprintf(stdout, "{\"id\":%.*s,\"output\":%s}\n", (int)id_len, id, input);
        /* Flush only when no further request is already waiting. */
        if (stdin->_IO_read_ptr >= stdin->_IO_read_end) fflush(stdout);
    }
    free(line);
    return 0;
}
