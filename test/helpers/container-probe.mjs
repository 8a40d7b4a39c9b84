// Run by checkContainers() (test/helpers/containers.ts) in a child process that is killed at its
// deadline: a Docker socket that accepts and never answers would otherwise leave testcontainers'
// request pending forever and keep the test run from exiting.
//
//   node test/helpers/container-probe.mjs '{"images":["postgres:16"],"pullTimeoutMs":60000,"ownerLabel":"..."}'
//
// Prints one JSON line: { engine: false, reason } or { engine: true, images: { NAME: "present" |
// "pulled" | "missing: why" }, ryuk: "present" | "pulled" | "disabled" | "missing: why", removed: N }.
// Asks the engine, through testcontainers' own client (DOCKER_HOST, ~/.testcontainers.properties,
// the default sockets), whether each image is there; pulls a missing one once with a deadline.
import { ImageName, getContainerRuntimeClient } from 'testcontainers';
import { REAPER_IMAGE } from 'testcontainers/build/reaper/reaper.js';

const { images, pullTimeoutMs, ownerLabel } = JSON.parse(process.argv[2] ?? '{}');
const out = (o) => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
  process.exit(0);
};
const message = (err) => String(err instanceof Error ? err.message : err).split('\n')[0];

let client;
try {
  client = await getContainerRuntimeClient();
} catch (err) {
  out({ engine: false, reason: message(err) });
}

async function available(image) {
  const name = ImageName.fromString(image);
  if (await client.image.exists(name)) return 'present';
  let timer;
  try {
    await Promise.race([
      client.image.pull(name),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${pullTimeoutMs} ms`)), pullTimeoutMs);
      }),
    ]);
  } catch (err) {
    return `missing: not present, and the pull failed (${message(err)})`;
  } finally {
    clearTimeout(timer);
  }
  // A pull whose progress stream reported an error still "ends": ask again.
  return (await client.image.exists(name)) ? 'pulled' : 'missing: not present, and the pull brought nothing';
}

const result = { engine: true, images: {}, ryuk: 'disabled', removed: 0 };
for (const image of images ?? []) result.images[image] = await available(image);
if (process.env.TESTCONTAINERS_RYUK_DISABLED !== 'true') result.ryuk = await available(REAPER_IMAGE);

// Without Ryuk, containers of a test run that died before its teardown stay behind: remove those
// whose owner process (label `${ownerLabel}=host:pid`) is gone.
if (ownerLabel) {
  const docker = client.container.dockerode;
  const host = (await import('node:os')).hostname();
  for (const c of await docker.listContainers({ all: true, filters: { label: [ownerLabel] } })) {
    const [ownerHost, pid] = String(c.Labels[ownerLabel]).split(':');
    if (ownerHost !== host || isAlive(Number(pid))) continue;
    await docker
      .getContainer(c.Id)
      .remove({ force: true, v: true })
      .then(() => result.removed++, () => {});
  }
}
out(result);

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}
