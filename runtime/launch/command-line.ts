// A command line typed by a person (VS Code's "Launch with Monitor" input box) as argv, POSIX-shell style
// but without a shell: words split on blanks, '…' literal, "…" with \" \\ \$ \` escapes, \ escaping the next
// character outside quotes. No expansion, pipes or redirects: a character like | or $ is just a character,
// so what runs is exactly what was typed. Pure.

export class CommandLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandLineError';
  }
}

/** Splits `line` into arguments; throws CommandLineError on an unclosed quote or a trailing backslash. */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) out.push(word);
      word = '';
      inWord = false;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new CommandLineError(`unclosed ' at column ${i + 1}`);
      word += line.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && j + 1 < line.length && '"\\$`'.includes(line[j + 1]!)) j++;
        word += line[j];
      }
      if (j >= line.length) throw new CommandLineError(`unclosed " at column ${i + 1}`);
      i = j;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new CommandLineError('the line ends with a lone \\');
      word += line[++i];
      inWord = true;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) out.push(word);
  return out;
}

/** One argument as the line would need it written (quoted only when it has to be). */
export function quoteArgument(arg: string): string {
  if (arg && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The inverse of splitCommandLine: splitCommandLine(joinCommandLine(a)) equals a. */
export function joinCommandLine(args: readonly string[]): string {
  return args.map(quoteArgument).join(' ');
}
