// Drives a thaw node with OpenAI's official Node.js client, as users will:
// models, completions, chat (whole and streamed), embeddings (the client
// asks for base64 by default) and a 404. Run by
// tests/integration/test_openai_client.c with THAW_URL, THAW_KEY, THAW_MODEL
// and THAW_EMBED_MODEL set; exits non-zero on the first mismatch.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: `${process.env.THAW_URL}/v1`, apiKey: process.env.THAW_KEY, maxRetries: 0 });
const model = process.env.THAW_MODEL, embedModel = process.env.THAW_EMBED_MODEL;

function check(cond, what) {
  if (!cond) { console.error(`FAIL: ${what}`); process.exit(1); }
  console.log(`ok: ${what}`);
}

const models = [];
for await (const m of client.models.list()) models.push(m.id);
check(models.includes(model) && models.includes(embedModel), `models.list has ${model} and ${embedModel}`);

const cmpl = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
check(typeof cmpl.choices[0].text === 'string' && cmpl.usage.total_tokens > 0, 'completions.create');

const messages = [{ role: 'user', content: 'Tell me a story' }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
const whole = chat.choices[0].message.content;
check(chat.choices[0].message.role === 'assistant' && whole.length > 0, 'chat.completions.create');

let streamed = '', finish = null, usage = null;
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  const c = chunk.choices[0];
  if (!c) continue;
  streamed += c.delta.content ?? '';
  if (c.finish_reason) finish = c.finish_reason;
}
check(streamed === whole, `streamed chat equals the whole answer (${JSON.stringify(streamed)})`);
check(finish === 'length' || finish === 'stop', `stream finish_reason ${finish}`);
check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'stream usage');

const emb = await client.embeddings.create({ model: embedModel, input: ['hello world', 'bye'] });
const v = emb.data[0].embedding;
const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
check(emb.data.length === 2 && v.length > 8 && Math.abs(norm - 1) < 1e-3, `embeddings (base64 by default), norm ${norm}`);
const embFloat = await client.embeddings.create({ model: embedModel, input: 'hello world', encoding_format: 'float' });
check(embFloat.data[0].embedding.every((x, i) => Math.abs(x - v[i]) < 1e-6), 'float and base64 embeddings agree');

try {
  await client.chat.completions.create({ model: 'no-such-model', messages });
  check(false, 'unknown model is refused');
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.status === 404, `unknown model: ${e.status} ${e.message}`);
}
console.log('all client checks passed');
