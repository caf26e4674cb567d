// Restate side of benches/compare: service "Bench", handler "call", exactly one durable side
// effect (ctx.run, journaled before the handler goes on), then the result. PORT (default 9080).
// The SDK calls Promise.withResolvers (Node >= 22); node 20 gets the three-line polyfill first.
Promise.withResolvers ??= function () {
  let resolve, reject;
  const promise = new this((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};
const restate = await import("@restatedev/restate-sdk");

const bench = restate.service({
  name: "Bench",
  handlers: {
    call: async (ctx, input) => {
      const effect = await ctx.run("effect", () => ({ i: input?.i ?? null, ok: true }));
      return effect;
    },
  },
});

const port = await restate.serve({ services: [bench], port: Number(process.env.PORT ?? 9080) });
console.error(`restate service listening on ${port}`);
