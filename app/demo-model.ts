/**
 * What the page says about the embedded model, in one place: it is a 15M-parameter demo trained on a small
 * corpus (public/models/webdms-default/README.md, retrofit/synth.py), and it does only the synthetic tasks
 * it was trained on. The suggestions are prompts in the exact form of its training data (spaced arithmetic,
 * variable tracking with the prompt's wording, retrieving a number from a short English text), each
 * checked to come out right with greedy decoding (`dms generate --model default --chat --temperature 0`).
 */

export const DEMO_NAME = 'Offline demo';
export const DEMO_DOWNLOAD = '30 MB';

/** One line next to the model's name. */
export const DEMO_SHORT = '15M-parameter offline demo: spaced arithmetic and variable tracking, not general chat';

/** What it can and cannot do, for the empty conversation and the first-run screen. */
export const DEMO_ABOUT =
  'This is a 15M-parameter demo model (30 MB, works offline), trained from scratch on a small corpus. ' +
  'It does what it was trained on: addition and multiplication written with spaces ("23 + 48", "37 x 6"), ' +
  'tracking variables ("x2 = x1."), and finding a number in a short text, showing its steps in a think block. ' +
  'Anything else comes out as English-looking text that is not to be trusted. For a real assistant, choose a model from Hugging Face.';

export const DEMO_SUGGESTIONS: { label: string; prompt: string }[] = [
  { label: 'What is 23 + 48?', prompt: 'What is 23 + 48?' },
  { label: 'What is 37 x 6?', prompt: 'What is 37 x 6?' },
  {
    label: 'Track the variables: x1 = 12. x2 = x1. x3 = 45. x4 = x2. What is x4?',
    prompt: 'Read the text and track the variables.\nx1 = 12. x2 = x1. x3 = 45. x4 = x2.\nWhat is the value of x4?',
  },
  {
    label: "Find the number: …Mona's locker number is 3172… What is it?",
    prompt:
      "Read the text.\nThe night was cold and the wind came down from the hills. The men sat by the fire and said little. Mona's locker number is 3172. In the morning the road was white with frost.\nWhat is Mona's locker number?",
  },
];

/** Suggestions for a real model. */
export const GENERAL_SUGGESTIONS: { label: string; prompt: string }[] = [
  'Explain KV cache compression in two sentences.',
  'Write a haiku about a GPU in a browser tab.',
  'Give me three tips for writing clear commit messages.',
].map((s) => ({ label: s, prompt: s }));

export const isDemoSpec = (spec: string): boolean => spec === 'default' || spec === '';
