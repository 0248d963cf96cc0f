// console pages: coming in the next commit
export function register(route) {}
